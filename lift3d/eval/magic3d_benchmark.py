"""The Magic3D benchmark: coarse NeRF + DMTet refinement on the main-job benchmark's captions.

Per caption it trains the coarse stage (``magic3d-coarse-bundled.yaml``: the DreamFusion main
job's settings, so this row is also DreamFusion's figure from the same run), then the refine
stage from it (``magic3d-refine-bundled.yaml``), as a user runs them, and scores both test
turntables against the world's ground truth like the main-job benchmark. Wall time of the
Magic3D row is coarse + refine.

    python scripts/bench_magic3d.py --out bench_runs/magic3d [--captions "a green cube" ...] [refine overrides]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from lift3d.eval.main_job_benchmark import ROOT, TRAINING, MethodResults, run_one
from lift3d.priors.world.catalog import HELD_OUT, caption
from lift3d.utils.io import atomic_write_text

METHODS = ("dreamfusion (= magic3d coarse)", "magic3d refine")


def table(rows: list[dict]) -> str:
    lines = ["| caption | set | method | colour acc | object acc | both | IoU | sphere IoU | Janus | wall (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def cells(r: dict) -> str:
        a, j = r["accuracy"], r.get("janus")
        return (f"{a['colour']:.2f} | {a['kind']:.2f} | {a['both']:.2f} | {r['iou']:.3f} | {r['sphere_iou']:.3f} | "
                f"{(format(j['janus'], '.2f') if j else '–')} | {r['wall_seconds']:.0f}")

    for r in rows:
        where = "held-out" if r["held_out"] else "training"
        if "error" in r:
            lines.append(f"| {r['caption']} | {where} | {r['method']} | failed: {r['error']} | | | | | | |")
        else:
            lines.append(f"| {r['caption']} | {where} | {r['method']} | {cells(r)} |")
    for held_out in (False, True):
        for method in METHODS:
            ok = [r for r in rows if "error" not in r and r["held_out"] == held_out and r["method"] == method]
            if not ok:
                continue
            js = [r["janus"]["janus"] for r in ok if r.get("janus")]
            mean = {"accuracy": {k: float(np.mean([r["accuracy"][k] for r in ok])) for k in ("colour", "kind", "both")},
                    "iou": float(np.mean([r["iou"] for r in ok])), "sphere_iou": float(np.mean([r["sphere_iou"] for r in ok])),
                    "janus": {"janus": float(np.mean(js))} if js else None, "wall_seconds": float(np.mean([r["wall_seconds"] for r in ok]))}
            label = f"**mean, {'held-out' if held_out else 'training'}** ({len(ok)})"
            lines.append(f"| {label} | | {method} | {cells(mean)} |")
    return "\n".join(lines)


def picture(rows: list[dict], path: Path, frames: tuple[int, ...] = (0, 8, 23, 38)) -> None:
    """Per caption a row: coarse normals then refine normals from the same turntable frames."""
    import imageio.v3 as iio

    by_caption: dict[str, dict[str, Path]] = {}
    for r in rows:
        if "error" not in r:
            by_caption.setdefault(r["caption"], {})[r["method"]] = Path(r["trial"])
    strips = []
    for trials in by_caption.values():
        if set(trials) != set(METHODS):
            continue
        panels = []
        for method in METHODS:
            test = sorted((trials[method] / "save").glob("it*-test"), key=lambda p: int(p.name[2:-5]))[-1]
            for i in frames:
                img = iio.imread(test / f"{i:03d}.png")
                h = img.shape[0]
                panels.append(img[:, h:2 * h])  # the normal panel of rgb | normal | opacity
            panels.append(np.full((h, 8, 3), 255, np.uint8))
        strips.append(np.concatenate(panels[:-1], axis=1))
    if strips:
        from lift3d.utils.io import write_png

        write_png(path, np.concatenate(strips, axis=0))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench_runs/magic3d"))
    ap.add_argument("--coarse-config", type=Path, default=ROOT / "configs" / "magic3d-coarse-bundled.yaml")
    ap.add_argument("--refine-config", type=Path, default=ROOT / "configs" / "magic3d-refine-bundled.yaml")
    ap.add_argument("--captions", nargs="+", default=None, metavar="CAPTION", help='run only these captions (e.g. "a green cube")')
    ap.add_argument("--picture", type=Path, default=None, help="write coarse | refine normals per caption to this PNG")
    ap.add_argument("overrides", nargs="*", help="config overrides of the refine stage")
    args = ap.parse_args(argv)
    if args.captions:  # --captions is greedy: key=value items after it are overrides
        args.overrides += [c for c in args.captions if "=" in c]
        args.captions = [c for c in args.captions if "=" not in c]
    from tqdm import tqdm

    args.out.mkdir(parents=True, exist_ok=True)
    log = MethodResults(args.out)
    jobs = [(c, k) for c, k in TRAINING + list(HELD_OUT[:3]) if args.captions is None or caption(c, k) in args.captions]
    seen, record = log.finished, log.record

    for colour, kind in tqdm(jobs, desc="magic3d benchmark", unit="caption"):
        coarse = seen.get((colour, kind, METHODS[0]))
        if coarse is None:
            coarse = record(run_one(colour, kind, True, args.out, args.coarse_config, []) | {"method": METHODS[0]})
        if "error" in coarse or (colour, kind, METHODS[1]) in seen:
            continue
        refine = run_one(colour, kind, True, args.out, args.refine_config,
                         [f"system.geometry_convert_from={coarse['trial']}", *args.overrides], stage="refine")
        refine["refine_seconds"] = refine["wall_seconds"]
        refine["wall_seconds"] = round(refine["wall_seconds"] + coarse["wall_seconds"], 1)  # the whole method
        record(refine | {"method": METHODS[1]})
    rows = log.latest(jobs, METHODS)
    text = table(rows)
    atomic_write_text(args.out / "table.md", text + "\n")
    if args.picture is not None:
        picture(rows, args.picture)
    print(text)
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; results in {log.path}")
