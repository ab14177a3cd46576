"""The main-job benchmark: text-to-3D on the bundled prior over training and held-out captions.

Runs ``launch.py --train`` (the README's main job) per caption as a user would, scores each
test turntable against the world's ground truth (:mod:`lift3d.eval.turntable`), and prints a
table per caption with means. Results go to ``<out>/results.jsonl``; a rerun skips what is there.

    python scripts/bench_main_job.py --out bench_runs/main_job
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lift3d.eval.turntable import classifier_accuracy, ground_truth_turntable, janus_rate, load_turntable, saturation, silhouette_iou, soft_fraction
from lift3d.priors.world.catalog import ASYMMETRIC_KINDS, HELD_OUT, caption
from lift3d.utils.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[2]
TRAINING = [("red", "house"), ("white", "snowman"), ("pink", "mug"), ("blue", "sphere"), ("green", "cube"), ("orange", "torus")]
"""Training captions of the benchmark (the first three are asymmetric)."""


def run_one(colour: str, kind: str, view_dependent: bool, out: Path, config: Path, extra: list[str], stage: str = "") -> dict:
    """Train one caption as a user would and score its turntable; ``stage`` names a later stage's run."""
    prompt = caption(colour, kind)
    name = f"{colour}-{kind}" + ("" if view_dependent else "-no-vdp") + (f"-{stage}" if stage else "")
    t0 = time.time()
    cmd = [sys.executable, str(ROOT / "launch.py"), "--config", str(config), "--train",
           f"system.prompt_processor.prompt={prompt}", f"exp_root_dir={out / 'runs'}", f"name={name}",
           "use_timestamp=false", "trainer.enable_progress_bar=false",
           f"system.prompt_processor.use_view_dependent_prompt={str(view_dependent).lower()}", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.time() - t0
    row = {"caption": prompt, "colour": colour, "kind": kind, "view_dependent": view_dependent,
           "held_out": (colour, kind) in HELD_OUT, "wall_seconds": round(wall, 1)}
    if proc.returncode != 0:
        return row | {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    trial = next((out / "runs" / name).glob("*/configs/parsed.yaml")).parent.parent
    tt = load_turntable(trial)
    gt = ground_truth_turntable(colour, kind, tt)
    sphere = ground_truth_turntable(colour, "sphere", tt)  # what a plain ball would score: the IoU floor
    row |= {"trial": str(trial), "iou": silhouette_iou(tt.opacity, gt.mask), "sphere_iou": silhouette_iou(sphere.mask.float(), gt.mask),
            "accuracy": classifier_accuracy(tt, colour, kind), "saturation": saturation(tt, gt),
            "soft_fraction": soft_fraction(tt.opacity)}
    janus = janus_rate(tt, kind, gt)
    if janus is not None:
        row["janus"] = janus
    return row


class MethodResults:
    """A multi-method benchmark's ``<out>/results.jsonl``: one row per (colour, kind, method) run,
    appended as runs finish; a rerun skips the finished ones and retries failures."""

    def __init__(self, out: Path) -> None:
        self.path = out / "results.jsonl"
        self.rows = [json.loads(line) for line in self.path.read_text().splitlines()] if self.path.exists() else []
        self.finished = {(r["colour"], r["kind"], r["method"]): r for r in self.rows if "error" not in r}

    def record(self, row: dict) -> dict:
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        return row

    def latest(self, jobs: list[tuple[str, str]], methods: tuple[str, ...]) -> list[dict]:
        """The newest row of each job and method, in that order (a retried run replaces its failure)."""
        newest = {(r["colour"], r["kind"], r["method"]): r for r in self.rows}
        return [newest[(c, k, m)] for c, k in jobs for m in methods if (c, k, m) in newest]


def table(rows: list[dict]) -> str:
    lines = ["| caption | set | view-dep. | colour acc | object acc | both | IoU | sphere IoU | Janus | front seen | wall (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['caption']} | | | failed: {r['error']} | | | | | | | {r['wall_seconds']:.0f} |")
            continue
        a, j = r["accuracy"], r.get("janus")
        js = (f"{j['janus']:.2f}", f"{j['front_feature_seen']:.2f}") if j else ("–", "–")
        lines.append(f"| {r['caption']} | {'held-out' if r['held_out'] else 'training'} | {'yes' if r['view_dependent'] else 'no'} | "
                     f"{a['colour']:.2f} | {a['kind']:.2f} | {a['both']:.2f} | {r['iou']:.3f} | {r['sphere_iou']:.3f} | {js[0]} | {js[1]} | {r['wall_seconds']:.0f} |")
    for label, sel in (("mean, training", lambda r: not r["held_out"] and r["view_dependent"]),
                       ("mean, held-out", lambda r: r["held_out"]),
                       ("mean, asymmetric, view-dependent", lambda r: r["kind"] in ASYMMETRIC_KINDS and r["view_dependent"]),
                       ("mean, asymmetric, plain prompt", lambda r: not r["view_dependent"])):
        ok = [r for r in rows if "error" not in r and sel(r)]
        if not ok:
            continue
        mean = lambda f: float(np.mean([f(r) for r in ok]))  # noqa: E731
        js = [r["janus"] for r in ok if "janus" in r]
        jtxt = (f"{np.mean([j['janus'] for j in js]):.2f}", f"{np.mean([j['front_feature_seen'] for j in js]):.2f}") if js else ("–", "–")
        lines.append(f"| **{label}** ({len(ok)}) | | | {mean(lambda r: r['accuracy']['colour']):.2f} | {mean(lambda r: r['accuracy']['kind']):.2f} | "
                     f"{mean(lambda r: r['accuracy']['both']):.2f} | {mean(lambda r: r['iou']):.3f} | {mean(lambda r: r['sphere_iou']):.3f} | {jtxt[0]} | {jtxt[1]} | {mean(lambda r: r['wall_seconds']):.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench_runs/main_job"))
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "dreamfusion-bundled.yaml")
    ap.add_argument("--no-plain", action="store_true", help="skip the plain-prompt (no view suffix) runs of the asymmetric captions")
    ap.add_argument("--captions", nargs="+", default=None, metavar="CAPTION", help='run only these captions (e.g. "a red house")')
    ap.add_argument("overrides", nargs="*", help="config overrides passed to every run")
    args = ap.parse_args(argv)
    if args.captions:  # --captions is greedy: key=value items after it are overrides, not captions
        args.overrides += [c for c in args.captions if "=" in c]
        args.captions = [c for c in args.captions if "=" not in c]
    from tqdm import tqdm

    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    done = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    jobs = [(c, k, True) for c, k in TRAINING + list(HELD_OUT[:3])]
    if not args.no_plain:
        jobs += [(c, k, False) for c, k in TRAINING if k in ASYMMETRIC_KINDS]
    if args.captions:
        jobs = [j for j in jobs if caption(j[0], j[1]) in args.captions]
    seen = {(r["colour"], r["kind"], r["view_dependent"]) for r in done if "error" not in r}
    for colour, kind, vd in tqdm(jobs, desc="main-job benchmark", unit="run"):
        if (colour, kind, vd) in seen:
            continue
        row = run_one(colour, kind, vd, args.out, args.config, args.overrides)
        done.append(row)
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
    latest = {(r["colour"], r["kind"], r["view_dependent"]): r for r in done}  # a retried run replaces its failure
    rows = [latest[j] for j in jobs if j in latest]
    text = table(rows)
    atomic_write_text(args.out / "table.md", text + "\n")
    print(text)
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; results in {results}")
