"""The export benchmark: how faithfully ``--export`` reproduces the object each trained run shows.

For every trial of a main-job benchmark folder (``<runs>/<name>/<trial>``), runs the README's
export command as a user would (``launch.py --export resume=<trial>``, default settings), and
reads its ``export.json``: the unaligned silhouette IoU of the exported mesh against the NeRF's
opacity (> 0.5) over the 60 test-turntable cameras, and the export's wall time.

    python scripts/bench_export.py bench_runs/main_job/runs --out bench_runs/export
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lift3d.utils.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[2]


def export_one(trial: Path, overrides: list[str]) -> dict:
    t0 = time.time()
    cmd = [sys.executable, str(ROOT / "launch.py"), "--config", str(trial / "configs" / "parsed.yaml"), "--export",
           f"resume={trial}", *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    row = {"trial": str(trial), "name": trial.parent.name, "wall_seconds": round(time.time() - t0, 1)}
    if proc.returncode != 0:
        return row | {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    report = json.loads(next(trial.glob("save/it*-export/export.json")).read_text())
    return row | {"level": report["surface"]["level"], "rule": report["surface"]["rule"],
                  "iou_mean": report["silhouette_iou_vs_nerf"]["mean"], "iou_min": report["silhouette_iou_vs_nerf"]["min"],
                  "faces": report["faces"], "warning": "warning:" in proc.stdout}


def table(rows: list[dict]) -> str:
    lines = ["| run | level | IoU vs NeRF (mean) | IoU (worst view) | faces | wall (s) |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | failed: {r['error']} | | | | {r['wall_seconds']:.0f} |")
        else:
            lines.append(f"| {r['name']} | {r['level']:.3g} | {r['iou_mean']:.3f} | {r['iou_min']:.3f} | {r['faces']:,} | {r['wall_seconds']:.1f} |")
    ok = [r for r in rows if "error" not in r]
    if ok:
        lines.append(f"| **mean** ({len(ok)}) | | {np.mean([r['iou_mean'] for r in ok]):.3f} | {np.mean([r['iou_min'] for r in ok]):.3f} | "
                     f"| {np.mean([r['wall_seconds'] for r in ok]):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, help="folder of trained runs: <runs>/<name>/<trial>/configs/parsed.yaml")
    ap.add_argument("--out", type=Path, default=Path("bench_runs/export"))
    ap.add_argument("--only", nargs="*", default=None, help="run names to export (default: all)")
    ap.add_argument("overrides", nargs="*", help="export overrides for every run, e.g. export.resolution=96")
    args = ap.parse_args(argv)
    if args.only:  # --only is greedy: key=value items after it are overrides, not run names
        args.overrides += [o for o in args.only if "=" in o]
        args.only = [o for o in args.only if "=" not in o]
    from tqdm import tqdm

    trials = sorted(p.parent.parent for p in args.runs.glob("*/*/configs/parsed.yaml"))
    if args.only:
        trials = [t for t in trials if t.parent.name in args.only]
    rows = [export_one(t, args.overrides) for t in tqdm(trials, desc="export benchmark", unit="run")]
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.json", json.dumps(rows, indent=2) + "\n")
    text = table(rows)
    atomic_write_text(args.out / "table.md", text + "\n")
    print(text)


if __name__ == "__main__":
    main()
