"""The image-to-3D benchmark: Zero-1-to-3 on the bundled view prior, scored against the world's truth.

For each example image (``examples/images``-style PNG with its JSON sidecar), ``launch.py
--train`` then ``--export`` run as a user runs them, with the prior and without it (the
reference-only baseline: ``system.loss.lambda_sds=0``), and the result is scored:

- **novel-view PSNR / SSIM**: test-turntable frames more than 20° in azimuth from the input
  view against the world's render of the true object from the same cameras, under the input's
  light and background; ``back`` rows use only views more than 135° away;
- **silhouette IoU**: opacity > 0.5 against the true mask, per frame, without alignment (the
  input camera fixes where the object is), mean over the turntable;
- **volume IoU / Chamfer**: the exported mesh against the true mesh (:mod:`lift3d.eval.mesh_metrics`);
- **Janus rate** (asymmetric objects): fraction of back views that show the front feature
  (:func:`lift3d.eval.turntable.janus_rate`).

    python scripts/bench_image_to_3d.py --out bench_runs/image_to_3d
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
import torch

from lift3d.eval.novel_view import mask_iou, psnr, ssim
from lift3d.eval.turntable import Turntable, janus_rate, load_turntable
from lift3d.priors.world.examples import ExampleTruth, benchmark_examples, read_truth, write_example
from lift3d.priors.world.render import WorldView, render_objects
from lift3d.utils.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[2]
NOVEL_AZIMUTH = 20.0
BACK_AZIMUTH = 135.0


def ground_truth_views(truth: ExampleTruth, tt: Turntable):
    """The world's render of the true object from the turntable's cameras, under the input's light and background."""
    n = tt.rgb.shape[0]
    view = WorldView(
        elevation=tt.elevation, azimuth=tt.azimuth, distance=tt.distance, fovy=tt.fovy,
        light_position=torch.tensor([truth.light_position]).expand(n, 3), background=torch.tensor([truth.background]).expand(n, 3),
        unlit=torch.zeros(n, dtype=torch.bool),
    )
    return render_objects([truth.kind] * n, [truth.colour] * n, view, resolution=tt.rgb.shape[-1])


def azimuth_from_reference(tt: Turntable, truth: ExampleTruth) -> torch.Tensor:
    """|azimuth − reference azimuth| of each frame, in [0, 180] degrees."""
    d = (tt.azimuth - truth.azimuth_deg).remainder(360.0)
    return torch.minimum(d, 360.0 - d)


def score_turntable(tt: Turntable, truth: ExampleTruth) -> dict:
    """Novel-view PSNR / SSIM (all novel and back views), silhouette IoU and Janus rate of a turntable."""
    gt = ground_truth_views(truth, tt)
    gt_rgb = gt.rgb.permute(0, 3, 1, 2)
    away = azimuth_from_reference(tt, truth)
    rows = []
    for i in range(len(away)):
        pred, target = tt.rgb[i].permute(1, 2, 0), gt_rgb[i].permute(1, 2, 0)
        rows.append((psnr(pred, target), ssim(pred, target), mask_iou(tt.opacity[i] > 0.5, gt.mask[i])))
    arr = np.asarray(rows)
    novel, back = (away > NOVEL_AZIMUTH).numpy(), (away > BACK_AZIMUTH).numpy()
    scores = {
        "psnr": float(arr[novel, 0].mean()), "ssim": float(arr[novel, 1].mean()),
        "psnr_back": float(arr[back, 0].mean()), "ssim_back": float(arr[back, 1].mean()),
        "silhouette_iou": float(arr[:, 2].mean()), "silhouette_iou_back": float(arr[back, 2].mean()),
        "psnr_reference_view": float(arr[~novel, 0].mean()),
    }
    janus = janus_rate(tt, truth.kind, gt)
    if janus is not None:
        scores["janus"] = janus["janus"]
    return scores


def score_mesh(mesh_path: Path, kind: str) -> dict:
    """Chamfer distance and volume IoU of an exported mesh against the true mesh."""
    from lift3d.eval.mesh_turntable import load_coloured_mesh
    from lift3d.eval.scores import mesh_scores

    return mesh_scores(load_coloured_mesh(mesh_path).mesh, kind)


def run_one(image: Path, baseline: bool, out: Path, config: Path, extra: list[str]) -> dict:
    """Train and export one example as a user would, then score it."""
    truth = read_truth(image)
    name = image.stem + ("-reference-only" if baseline else "")
    common = ["--config", str(config), f"data.image_path={image}", f"exp_root_dir={out / 'runs'}", f"name={name}",
              "use_timestamp=false", "trainer.enable_progress_bar=false", *(["system.loss.lambda_sds=0"] if baseline else []), *extra]
    row = {"image": image.stem, "colour": truth.colour, "kind": truth.kind, "held_out": truth.held_out, "baseline": baseline}
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(ROOT / "launch.py"), "--train", *common], capture_output=True, text=True, cwd=ROOT)
    row["wall_seconds"] = round(time.time() - t0, 1)
    if proc.returncode != 0:
        return row | {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    trial = next((out / "runs" / name).glob("*/configs/parsed.yaml")).parent.parent
    row |= {"trial": str(trial)} | score_turntable(load_turntable(trial), truth)
    proc = subprocess.run([sys.executable, str(ROOT / "launch.py"), "--export", *common, f"resume={trial}", "export.formats=[glb]"],
                          capture_output=True, text=True, cwd=ROOT)
    meshes = sorted((trial / "save").glob("**/*.glb"))
    if proc.returncode == 0 and meshes:
        row |= score_mesh(meshes[-1], truth.kind)
    else:
        row["export_error"] = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no mesh written"
    return row


COLUMNS = (("psnr", "PSNR", ".2f"), ("ssim", "SSIM", ".3f"), ("psnr_back", "PSNR back", ".2f"), ("silhouette_iou", "sil. IoU", ".3f"),
           ("silhouette_iou_back", "sil. IoU back", ".3f"), ("volume_iou", "vol. IoU", ".3f"), ("chamfer", "Chamfer", ".3f"),
           ("janus", "Janus", ".2f"), ("wall_seconds", "train (s)", ".0f"))


def table(rows: list[dict]) -> str:
    head = "| input | set | method | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (3 + len(COLUMNS))]

    def cells(r: dict) -> str:
        return " | ".join(format(r[k], f) if k in r else "–" for k, _, f in COLUMNS)

    for r in rows:
        method = "reference only" if r["baseline"] else "zero123"
        if "error" in r:
            lines.append(f"| {r['image']} | | {method} | failed: {r['error']} |")
            continue
        lines.append(f"| {r['image']} | {'held-out' if r['held_out'] else 'training'} | {method} | {cells(r)} |")
    for held_out in (True, False):
        for baseline in (False, True):
            ok = [r for r in rows if "error" not in r and r["held_out"] == held_out and r["baseline"] == baseline]
            if not ok:
                continue
            mean = {k: float(np.mean([r[k] for r in ok if k in r])) for k, _, _ in COLUMNS if any(k in r for r in ok)}
            label = f"**mean, {'held-out' if held_out else 'training'}** ({len(ok)})"
            lines.append(f"| {label} | | {'reference only' if baseline else 'zero123'} | {cells(mean)} |")
    return "\n".join(lines)


def picture(rows: list[dict], images: Path, path: Path, frames: tuple[int, ...] = (0, 10, 20, 30, 40, 50)) -> None:
    """Per prior run a row: the input image, then test-turntable frames (every 60° of the default 60-frame orbit)."""
    from PIL import Image

    from lift3d.utils.io import write_png

    strips = []
    for r in rows:
        if r["baseline"] or "trial" not in r:
            continue
        tt = load_turntable(Path(r["trial"]))
        h = tt.rgb.shape[-1]
        ref = np.asarray(Image.open(images / f"{r['image']}.png").convert("RGB").resize((h, h), Image.LANCZOS))
        panels = [ref, np.full((h, 4, 3), 255, np.uint8)]
        panels += [(tt.rgb[i].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8) for i in frames if i < len(tt.rgb)]
        strips.append(np.concatenate(panels, axis=1))
    if strips:
        write_png(path, np.concatenate(strips, axis=0))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench_runs/image_to_3d"))
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "zero123-bundled.yaml")
    ap.add_argument("--images", type=Path, default=None, help="folder of example PNGs with sidecars (default: rendered into <out>/images)")
    ap.add_argument("--only", nargs="+", default=None, metavar="STEM", help="run only these examples, e.g. a_green_house")
    ap.add_argument("--no-baseline", action="store_true", help="skip the reference-only runs")
    ap.add_argument("--picture", type=Path, default=None, help="write input | turntable every 60° per prior run to this PNG")
    ap.add_argument("overrides", nargs="*", help="config overrides passed to every run")
    args = ap.parse_args(argv)
    from tqdm import tqdm

    args.out.mkdir(parents=True, exist_ok=True)
    images = args.images or args.out / "images"
    if args.images is None:
        for colour, kind in benchmark_examples():
            if not (images / f"a_{colour}_{kind}.png").exists():
                write_example(images, colour, kind)
    stems = [f"a_{c}_{k}" for c, k in benchmark_examples()] if args.only is None else args.only
    jobs = [(images / f"{s}.png", b) for s in stems for b in ((False,) if args.no_baseline else (False, True))]
    results = args.out / "results.jsonl"
    done = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    seen = {(r["image"], r["baseline"]) for r in done if "error" not in r}
    for image, baseline in tqdm(jobs, desc="image-to-3D benchmark", unit="run"):
        if (image.stem, baseline) in seen:
            continue
        row = run_one(image, baseline, args.out, args.config, args.overrides)
        done.append(row)
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
    latest = {(r["image"], r["baseline"]): r for r in done}
    rows = [latest[(i.stem, b)] for i, b in jobs if (i.stem, b) in latest]
    text = table(rows)
    atomic_write_text(args.out / "table.md", text + "\n")
    if args.picture is not None:
        picture(rows, images, args.picture)
    print(text)
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; results in {results}")
