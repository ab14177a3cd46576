"""Finding a prior's directory: a local path in diffusers layout, or ``bundled:<name>``."""

from __future__ import annotations

from pathlib import Path

from lift3d.errors import PriorError
from lift3d.priors import BUNDLED, BUNDLED_PREFIX
from lift3d.registry import suggest


def resolve_prior_path(name_or_path: str) -> Path:
    """The directory of a prior; raises :class:`PriorError` with the fix when it is not usable."""
    if name_or_path.startswith(BUNDLED_PREFIX):
        name = name_or_path[len(BUNDLED_PREFIX):]
        if name not in BUNDLED:
            raise PriorError(f"no bundled prior {name!r}{suggest(name, list(BUNDLED))}; bundled priors: {sorted(BUNDLED)}")
        path = BUNDLED[name]
        if not (path / "model_index.json").is_file():
            raise PriorError(f"bundled prior {name!r} is missing from {path}; reinstall lift3d or train it again as {path / 'README.md'} says")
        return path
    if not name_or_path:
        raise PriorError("no prior given; set system.guidance.pretrained_model_name_or_path to a directory in diffusers layout")
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise PriorError(
            f"prior {name_or_path!r} not found: no such directory (weights are never downloaded); "
            "pass a local directory in diffusers layout, or bundled:text"
        )
    if not (path / "model_index.json").is_file() or not (path / "unet").is_dir():
        raise PriorError(f"{name_or_path!r} is not a diffusers-layout prior (needs model_index.json and unet/); point at the pipeline's root directory")
    return path.resolve()


def read_model_index(path: Path) -> dict:
    import json

    return json.loads((path / "model_index.json").read_text())
