"""One run of an evaluation suite, in its own process: train, export, score, write ``result.json``.

The engines call :func:`execute_run`, which starts ``python -m lift3d.eval.worker <spec.json>``
so that a crash, a NaN or an out-of-memory kill of one run never takes the suite down, and so
that peak memory is that run's own. The row it returns is what goes into ``results.jsonl``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from lift3d.utils.io import atomic_write_text


def _find_trial(root: Path) -> Path:
    found = sorted(root.glob("*/configs/parsed.yaml"))
    if not found:
        raise RuntimeError(f"training wrote no trial under {root}")
    return found[-1].parent.parent


def non_finite(trial: Path) -> str | None:
    """Why a trained trial is broken by NaN/inf (a logged loss or the saved weights), or None."""
    import torch

    metrics = trial / "csv_logs" / "metrics.csv"
    if metrics.is_file():
        with open(metrics) as f:
            for row in csv.DictReader(f):
                value = row.get("train/loss") or ""
                if value and not math.isfinite(float(value)):
                    return f"training loss became {value} at step {row['step']}"
    state = torch.load(trial / "ckpts" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    bad = [k for k, v in state.items() if torch.is_floating_point(v) and not torch.isfinite(v).all()]
    return f"trained weights hold NaN/inf ({bad[0]}{f' and {len(bad) - 1} more' if len(bad) > 1 else ''})" if bad else None


def _newest(trial: Path, pattern: str) -> Path | None:
    found = sorted((trial / "save").glob(pattern), key=lambda p: int(p.name[2:].split("-")[0]))
    return found[-1] if found else None


def work(spec: dict, run_dir: Path) -> dict:
    """Train, export and score one run in this process; returns metrics and artefact paths."""
    from lift3d.cli import run as lift3d_run
    from lift3d.eval.scores import score_run

    t0 = time.perf_counter()
    root = run_dir / "trial"
    code = lift3d_run(["--config", spec["preset"], "--train", *spec["overrides"], f"exp_root_dir={root}", "name=run",
                       "use_timestamp=false", "trainer.enable_progress_bar=false"])
    if code != 0:
        raise RuntimeError(f"training stopped with exit code {code}")
    trial = _find_trial(root / "run")
    for number, stage in enumerate(spec.get("stages", []), start=2):
        broken = non_finite(trial)
        if broken is not None:
            raise FloatingPointError(f"stage {number - 1}: {broken}")
        code = lift3d_run(["--config", stage["preset"], "--train", *stage["overrides"], f"system.geometry_convert_from={trial}",
                           f"exp_root_dir={root}", f"name=stage{number}", "use_timestamp=false", "trainer.enable_progress_bar=false"])
        if code != 0:
            raise RuntimeError(f"stage {number} stopped with exit code {code}")
        trial = _find_trial(root / f"stage{number}")
    broken = non_finite(trial)
    if broken is not None:
        raise FloatingPointError(broken)
    if spec["export"]:
        code = lift3d_run(["--config", str(trial / "configs" / "parsed.yaml"), "--export", f"resume={trial}"])
        if code != 0:
            raise RuntimeError(f"export stopped with exit code {code}")
    wall = time.perf_counter() - t0
    mesh_dir = _newest(trial, "it*-export")
    mesh = mesh_dir / "model.obj" if mesh_dir is not None and (mesh_dir / "model.obj").is_file() else None
    metrics = score_run(trial, spec["prompt"], mesh, spec.get("clip_model"), spec.get("image"))
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"metrics {bad} are NaN")
    info = json.loads((trial / "train_info.json").read_text())
    test = _newest(trial, "it*-test")
    artefacts = {
        "trial": str(trial),
        "turntable_frames": str(test) if test else None,
        "turntable_video": str(test.with_suffix(".mp4")) if test and test.with_suffix(".mp4").is_file() else None,
        "mesh": str(mesh_dir / "model.glb") if mesh_dir and (mesh_dir / "model.glb").is_file() else (str(mesh) if mesh else None),
    }
    return {
        "wall_seconds": wall,
        "steps_per_second": info["steps_per_second"],
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "metrics": metrics,
        "artefacts": artefacts,
    }


def execute_run(spec: dict, out: str, threads: int = 1) -> dict:
    """Run ``spec`` in a child process; the results row, ``status`` "ok" or "failed" with its error."""
    run_dir = Path(out) / "runs" / spec["run_id"]
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("result.json", "error.txt"):
        (run_dir / stale).unlink(missing_ok=True)
    atomic_write_text(run_dir / "spec.json", json.dumps(spec, indent=2))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.time()
    with open(run_dir / "log.txt", "w") as log:
        proc = subprocess.run([sys.executable, "-m", "lift3d.eval.worker", str(run_dir)], stdout=log, stderr=subprocess.STDOUT, env=env)
    result = run_dir / "result.json"
    if proc.returncode == 0 and result.is_file():
        return spec_row(spec) | {"status": "ok"} | json.loads(result.read_text())
    error = (run_dir / "error.txt").read_text().strip() if (run_dir / "error.txt").is_file() else ""
    if not error:
        error = f"worker exited with code {proc.returncode}" + (" (killed: out of memory?)" if proc.returncode < 0 else "")
    return failed_row(spec, error) | {"wall_seconds": time.time() - t0, "log": str(run_dir / "log.txt")}


def spec_row(spec: dict) -> dict:
    """The fields of a results row that come from the run's spec."""
    row = {k: spec[k] for k in ("run_id", "method", "prompt", "seed", "hparams", "preset", "overrides")}
    if spec.get("image"):
        row["image"] = spec["image"]
    if spec.get("sweep"):
        row["varied"] = spec.get("varied")
    return row


def failed_row(spec: dict, error: str) -> dict:
    return spec_row(spec) | {"status": "failed", "error": error}


def main(argv: list[str] | None = None) -> int:
    run_dir = Path((argv or sys.argv[1:])[0])
    spec = json.loads((run_dir / "spec.json").read_text())
    try:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        result = work(spec, run_dir)
    except Exception as exc:  # recorded as this run's failure; the suite goes on
        import traceback

        traceback.print_exc()
        atomic_write_text(run_dir / "error.txt", f"{type(exc).__name__}: {exc}".splitlines()[0])
        return 1
    atomic_write_text(run_dir / "result.json", json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
