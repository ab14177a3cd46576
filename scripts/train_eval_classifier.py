#!/usr/bin/env python
"""Train the bundled world's evaluation classifier (object, colour, view) and ship it.

    python scripts/train_eval_classifier.py --out lift3d/priors/weights/classifier
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lift3d.eval.world_classifier import CLASSIFIER_DIR, WorldClassifier
from lift3d.priors.world.catalog import COLOURS, KINDS
from lift3d.priors.world.render import render_objects, sample_views
from lift3d.prompts.view_dependent import view_index
from lift3d.utils.io import atomic_write_text

SEED = 12345  # never used by the priors' training


def render_labelled(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    colours = list(COLOURS)
    imgs, kinds, cols, views = [], [], [], []
    for start in tqdm(range(0, n, 256), desc="rendering", unit="chunk"):
        b = min(256, n - start)
        k = torch.randint(len(KINDS), (b,), generator=g)
        c = torch.randint(len(colours), (b,), generator=g)
        view = sample_views(b, g)
        out = render_objects([KINDS[i] for i in k], [colours[i] for i in c], view)
        imgs.append(out.rgb.permute(0, 3, 1, 2))
        kinds.append(k), cols.append(c), views.append(view_index(view.elevation, view.azimuth))
    return {"images": torch.cat(imgs), "kind": torch.cat(kinds), "colour": torch.cat(cols), "view": torch.cat(views)}


def scale_and_shift(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Renders zoomed about the centre by ``scale`` (B,) (> 1: the object larger) and moved by ``shift``
    (B, 2) (fractions of the image), the border pixels (background) filling what comes into view.

    The classifier then judges shape, not size or placement: meshes from other tools arrive at their
    own size, and a sphere shrunk to a cube's size must still read as a sphere."""
    b = x.shape[0]
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / scale
    theta[:, :, 2] = -2.0 * shift / scale[:, None]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_scale_and_shift(x: torch.Tensor, g: torch.Generator, lo: float = 0.7, hi: float = 1.3, max_shift: float = 0.1) -> torch.Tensor:
    b = x.shape[0]
    scale = torch.exp(torch.empty(b).uniform_(math.log(lo), math.log(hi), generator=g))
    shift = torch.empty(b, 2).uniform_(-max_shift, max_shift, generator=g)
    return scale_and_shift(x, scale, shift)


def accuracy(model: WorldClassifier, data: dict) -> dict[str, float]:
    model.eval()
    hits = {"kind": 0, "colour": 0, "view": 0}
    with torch.no_grad():
        for i in range(0, len(data["images"]), 512):
            logits = model(data["images"][i : i + 512])
            for name, lg in zip(hits, logits):
                hits[name] += (lg.argmax(-1) == data[name][i : i + 512]).sum().item()
    return {k: v / len(data["images"]) for k, v in hits.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=CLASSIFIER_DIR)
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--no-scale-shift", dest="scale_shift", action="store_false",
                    help="train without the scale (0.7-1.3x) and shift (10 %%) augmentation")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    t0 = time.time()
    train = render_labelled(args.images, SEED)
    test = render_labelled(2000, SEED + 1)
    model = WorldClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=args.steps)
    g = torch.Generator().manual_seed(SEED)
    bar = tqdm(range(args.steps), desc="training classifier", unit="step")
    for _ in bar:
        model.train()
        idx = torch.randint(len(train["images"]), (args.batch_size,), generator=g)
        x = train["images"][idx]
        if args.scale_shift:
            x = random_scale_and_shift(x, g)
        x = (x + 0.03 * torch.randn_like(x)).clamp(0, 1)  # robustness to the noise of generated images
        k, c, v = model(x)
        loss = F.cross_entropy(k, train["kind"][idx]) + F.cross_entropy(c, train["colour"][idx]) + F.cross_entropy(v, train["view"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    acc = accuracy(model, test)
    n = len(test["images"])
    scaled = {f"x{s}": accuracy(model, {**test, "images": scale_and_shift(test["images"], torch.full((n,), s), torch.zeros(n, 2))})
              for s in (0.75, 1.25)}
    model.save(args.out)
    info = {"held_out_render_accuracy": acc, "scaled_render_accuracy": scaled, "scale_shift_augmentation": args.scale_shift,
            "train_images": args.images, "steps": args.steps, "wall_seconds": round(time.time() - t0, 1)}
    atomic_write_text(args.out / "metrics.json", json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
