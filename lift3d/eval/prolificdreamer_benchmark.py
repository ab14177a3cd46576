"""The ProlificDreamer benchmark: VSD against SDS at the same low guidance scale, and against DreamFusion's preset.

Per caption of the main-job benchmark it runs, as a user would:

* ``dreamfusion preset``: ``dreamfusion-bundled.yaml`` as shipped (guidance 5);
* ``sds @ s``: the same preset at VSD's guidance scale ``s``;
* ``vsd stage 1``: ``prolificdreamer-bundled.yaml`` (NeRF + VSD at ``s``);
* ``prolificdreamer``: stages 2 and 3 from it (``prolificdreamer-geometry-bundled.yaml``,
  ``prolificdreamer-texture-bundled.yaml``); its wall time is the three stages'.

Each turntable is scored against the world's ground truth like the main-job benchmark, plus the
mean colour saturation of the object in the renders against the true object's (SDS's known
over-saturation at high guidance shows as render above truth) and the soft-edge fraction of the
silhouettes (half-transparent pixels per object pixel: SDS's over-smoothing at low guidance
shows as fuzzy edges).

    python scripts/bench_prolificdreamer.py --out bench_runs/prolificdreamer [--captions "a white snowman" ...]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from lift3d.eval.main_job_benchmark import ROOT, TRAINING, MethodResults, run_one
from lift3d.priors.world.catalog import HELD_OUT, caption
from lift3d.utils.io import atomic_write_text

CONFIGS = ROOT / "configs"
METHODS = ("dreamfusion preset", "sds @ s", "vsd stage 1", "prolificdreamer")


def _cells(r: dict) -> str:
    a, j, s = r["accuracy"], r.get("janus"), r["saturation"]
    return (f"{a['colour']:.2f} | {a['kind']:.2f} | {a['both']:.2f} | {r['iou']:.3f} | {(format(j['janus'], '.2f') if j else '–')} | "
            f"{s['render']:.2f} / {s['truth']:.2f} | {r['soft_fraction']:.2f} | {r['wall_seconds']:.0f}")


def table(rows: list[dict], scale: float) -> str:
    """Per caption and method, then the means per caption set."""
    name = lambda m: m.replace("@ s", f"@ {scale:g}").replace("vsd stage", f"vsd @ {scale:g}, stage")  # noqa: E731
    lines = ["| caption | set | method | colour acc | object acc | both | IoU | Janus | saturation (render / truth) | soft edge | wall (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        where = "held-out" if r["held_out"] else "training"
        body = f"failed: {r['error']} | | | | | | | |" if "error" in r else _cells(r)
        lines.append(f"| {r['caption']} | {where} | {name(r['method'])} | {body}")
    for held_out in (False, True):
        for method in METHODS:
            ok = [r for r in rows if "error" not in r and r["held_out"] == held_out and r["method"] == method]
            if not ok:
                continue
            js = [r["janus"]["janus"] for r in ok if r.get("janus")]
            mean = {"accuracy": {k: float(np.mean([r["accuracy"][k] for r in ok])) for k in ("colour", "kind", "both")},
                    "iou": float(np.mean([r["iou"] for r in ok])), "janus": {"janus": float(np.mean(js))} if js else None,
                    "saturation": {k: float(np.mean([r["saturation"][k] for r in ok])) for k in ("render", "truth")},
                    "soft_fraction": float(np.mean([r["soft_fraction"] for r in ok])),
                    "wall_seconds": float(np.mean([r["wall_seconds"] for r in ok]))}
            lines.append(f"| **mean, {'held-out' if held_out else 'training'}** ({len(ok)}) | | {name(method)} | {_cells(mean)}")
    return "\n".join(lines)


def picture(rows: list[dict], path: Path, frames: tuple[int, ...] = (0, 15, 30, 45)) -> None:
    """Per caption a row: the rgb of SDS at s, VSD (three stages) and DreamFusion's preset, same frames."""
    import imageio.v3 as iio

    from lift3d.utils.io import write_png

    shown = ("sds @ s", "prolificdreamer", "dreamfusion preset")
    by_caption: dict[str, dict[str, Path]] = {}
    for r in rows:
        if "error" not in r:
            by_caption.setdefault(r["caption"], {})[r["method"]] = Path(r["trial"])
    strips = []
    for trials in by_caption.values():
        if not set(shown) <= set(trials):
            continue
        panels = []
        for method in shown:
            test = sorted((trials[method] / "save").glob("it*-test"), key=lambda p: int(p.name[2:-5]))[-1]
            for i in frames:
                img = iio.imread(test / f"{i:03d}.png")
                panels.append(img[:, : img.shape[0]])
            panels.append(np.full((img.shape[0], 8, 3), 255, np.uint8))
        strips.append(np.concatenate(panels[:-1], axis=1))
    if strips:
        write_png(path, np.concatenate(strips, axis=0))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench_runs/prolificdreamer"))
    ap.add_argument("--captions", nargs="+", default=None, metavar="CAPTION", help='run only these captions (e.g. "a white snowman")')
    ap.add_argument("--picture", type=Path, default=None, help="write SDS | VSD | DreamFusion renders per caption to this PNG")
    args = ap.parse_args(argv)
    from tqdm import tqdm

    from lift3d.config import load_mapping

    scale = float(load_mapping(CONFIGS / "prolificdreamer-bundled.yaml", [])["system"]["guidance"]["guidance_scale"])
    args.out.mkdir(parents=True, exist_ok=True)
    log = MethodResults(args.out)
    jobs = [(c, k) for c, k in TRAINING + list(HELD_OUT[:3]) if args.captions is None or caption(c, k) in args.captions]
    seen, record = log.finished, log.record

    def once(colour, kind, method, config, extra, stage="") -> dict:
        if (colour, kind, method) in seen:
            return seen[(colour, kind, method)]
        return record(run_one(colour, kind, True, args.out, CONFIGS / config, extra, stage=stage) | {"method": method})

    for colour, kind in tqdm(jobs, desc="prolificdreamer benchmark: sds and vsd", unit="caption"):
        once(colour, kind, METHODS[1], "dreamfusion-bundled.yaml", [f"system.guidance.guidance_scale={scale:g}"], stage="sds")
        coarse = once(colour, kind, METHODS[2], "prolificdreamer-bundled.yaml", [], stage="vsd")
        if "error" in coarse or (colour, kind, METHODS[3]) in seen:
            continue
        geometry = run_one(colour, kind, True, args.out, CONFIGS / "prolificdreamer-geometry-bundled.yaml",
                           [f"system.geometry_convert_from={coarse['trial']}"], stage="geometry")
        if "error" in geometry:
            record(geometry | {"method": METHODS[3]})
            continue
        texture = run_one(colour, kind, True, args.out, CONFIGS / "prolificdreamer-texture-bundled.yaml",
                          [f"system.geometry_convert_from={geometry['trial']}"], stage="texture")
        texture["stage_seconds"] = [coarse["wall_seconds"], geometry["wall_seconds"], texture["wall_seconds"]]
        texture["wall_seconds"] = round(sum(texture["stage_seconds"]), 1)  # the whole method
        record(texture | {"method": METHODS[3]})
    for colour, kind in tqdm(jobs, desc="prolificdreamer benchmark: dreamfusion preset", unit="caption"):
        once(colour, kind, METHODS[0], "dreamfusion-bundled.yaml", [], stage="df")
    rows = log.latest(jobs, METHODS)
    text = table(rows, scale)
    atomic_write_text(args.out / "table.md", text + "\n")
    if args.picture is not None:
        picture(rows, args.picture)
    print(text)
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; results in {log.path}")
