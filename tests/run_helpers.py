"""Running launch.py the way a user does, with settings small enough for CPU tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]

SMALL = [
    "data.resolution=16", "data.eval_resolution=16", "data.n_test_views=5", "data.n_val_views=2", "data.batch_size=2",
    "trainer.val_check_interval=2", "trainer.enable_progress_bar=false", "system.renderer.num_samples_per_ray=16",
    "system.renderer.grid_resolution=16", "system.renderer.grid_update_every=2", "system.geometry.encoding.log2_hashmap_size=12",
    "system.geometry.encoding.n_levels=4", "system.material.ambient_only_steps=1", "checkpoint.every_n_train_steps=2",
]


def launch(args: list[str], cwd: Path, prelude: str = "", **kw) -> subprocess.CompletedProcess:
    code = f"{prelude}\nimport sys, runpy\nsys.argv = ['launch.py'] + {args!r}\nrunpy.run_path({str(ROOT / 'launch.py')!r}, run_name='__main__')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, **kw)


def trial_dirs(root: Path) -> list[Path]:
    return sorted(p.parent.parent for p in root.glob("*/*/configs/parsed.yaml"))


def assert_valid_gltf(path: Path) -> None:
    """The Khronos glTF validator finds no error in ``path`` (skips where node or it is absent)."""
    import shutil

    import pytest

    validator = Path(__file__).parent / "node_modules" / "gltf-validator"
    node = shutil.which("node")
    if node is None or not validator.exists():
        pytest.skip("node or the npm package gltf-validator is absent (.ci/run installs both)")
    code = ("const v=require('gltf-validator');const fs=require('fs');"
            f"v.validateBytes(new Uint8Array(fs.readFileSync({str(path)!r}))).then(r=>"
            "{console.log(JSON.stringify(r.issues));process.exit(r.issues.numErrors>0?1:0)})")
    proc = subprocess.run([node, "-e", code], capture_output=True, text=True, cwd=Path(__file__).parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def preset_with(name: str, folder: Path, settings: dict) -> str:
    """``configs/<name>.yaml`` with ``settings`` (dotted keys) written into it, as a user's edited copy
    (a chain of stages takes the same command-line overrides, so stage-specific sizes go in the file)."""
    import yaml

    cfg = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    for key, value in settings.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)
