"""``lift3d eval score``: put a mesh from any tool in the same table as lift3d's runs.

The mesh is rendered on the test cameras of a preset (the bundled one by default) with
:mod:`lift3d.eval.mesh_turntable`, scored with :mod:`lift3d.eval.scores`, and recorded as one
row of ``results.jsonl`` in the output folder, which may be a new folder or the folder of a
suite (its report then shows the mesh as one more method).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from lift3d.errors import InputError
from lift3d.eval.runner import SUITE, append_result
from lift3d.utils.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PRESET = ROOT / "configs" / "dreamfusion-bundled.yaml"


def _cameras(preset: Path):
    from lift3d.config import load_mapping, parse
    from lift3d.data.random_camera import OrbitDataset
    from lift3d.experiment import ExperimentConfig

    cfg = parse(ExperimentConfig, load_mapping(preset, ["system.prompt_processor.prompt=unused"]))
    orbit = OrbitDataset(cfg.data, cfg.data.n_test_views)
    return [orbit[i] for i in range(len(orbit))], cfg.system.video_fps


def score_mesh(mesh_path: str | Path, prompt: str, out: str | Path, name: str | None = None, up: str = "auto",
               clip_model: str | None = None, preset: str | Path = DEFAULT_PRESET) -> dict:
    """Render, score and record one mesh; returns its results row."""
    from lift3d.eval.mesh_turntable import load_coloured_mesh, render_turntable
    from lift3d.eval.scores import turntable_scores
    from lift3d.priors.world.catalog import parse_caption
    from lift3d.utils.images import to_uint8, write_video

    out = Path(out)
    # a suite's folder (or one of earlier scores) is fine: the mesh joins its table
    if not (out / SUITE).is_file() and out.exists() and any(out.iterdir()):
        raise InputError(f"{out} is not empty and is not a lift3d eval folder; choose a new or empty --out, or a suite's folder")
    if not prompt.strip():
        raise InputError("--prompt is empty; give the prompt the mesh was made for, e.g. --prompt \"a red house\"")
    if parse_caption(prompt) is None and not clip_model:
        raise InputError(f"{prompt!r} names no object of the bundled world, so only a CLIP score applies; add --clip-model <local CLIP directory>")
    mesh = load_coloured_mesh(mesh_path, up)
    t0 = time.perf_counter()
    cameras, fps = _cameras(Path(preset))
    tt = render_turntable(mesh, cameras)
    metrics = turntable_scores(tt, prompt, mesh.mesh, clip_model)
    name = name or re.sub(r"[^A-Za-z0-9_-]+", "-", Path(mesh_path).stem)
    run_id = f"external__{name}__{re.sub(r'[^A-Za-z0-9]+', '-', prompt).strip('-').lower()}"
    frames_dir = out / "runs" / run_id / "turntable"
    frames_dir.mkdir(parents=True, exist_ok=True)
    import imageio.v3 as iio

    frames = [to_uint8(img.permute(1, 2, 0)) for img in tt.rgb]
    for i, frame in enumerate(frames):
        iio.imwrite(frames_dir / f"{i:04d}.png", frame, extension=".png")
    video = frames_dir.with_suffix(".mp4")
    write_video(video, frames, fps=fps)
    if not (out / SUITE).is_file():
        atomic_write_text(out / SUITE, json.dumps({"name": "external meshes", "suite": None}, indent=2))
    row = {
        "run_id": run_id, "method": name, "prompt": prompt, "seed": 0, "hparams": {}, "status": "ok",
        "mesh_file": str(Path(mesh_path).resolve()), "wall_seconds_scoring": time.perf_counter() - t0, "metrics": metrics,
        "artefacts": {"turntable_frames": str(frames_dir.resolve()), "turntable_video": str(video.resolve()), "mesh": str(Path(mesh_path).resolve())},
    }
    append_result(out, row)
    return row
