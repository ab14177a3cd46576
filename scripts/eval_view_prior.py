#!/usr/bin/env python
"""Score the bundled view-conditioned prior by novel-view synthesis on held-out objects.

Renders (reference, target) view pairs of the held-out (colour, object) pairs (never seen in
training), predicts each target from its reference and relative camera (50 DDIM steps, fixed
seed), and reports PSNR, SSIM and mask IoU against the ground-truth render, beside the trivial
baseline of returning the reference view unchanged, for each guidance scale asked for. Also
reports whether the prior uses its reference: the x0 error at t = 950 with the right reference
and with another example's (:mod:`lift3d.priors.view_prior.diagnostics`).

    python scripts/eval_view_prior.py --views 64 --guidance 1 1.5 3 --out lift3d/priors/weights/view/eval.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from lift3d.eval.novel_view import novel_view_scores
from lift3d.guidance.view_prior import load_view_prior
from lift3d.priors import BUNDLED
from lift3d.priors.view_prior.diagnostics import reference_use
from lift3d.priors.view_prior.train import held_out_pairs, render_pairs
from lift3d.priors.world.catalog import training_pairs
from lift3d.utils.io import atomic_write_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", type=Path, default=BUNDLED["view"])
    ap.add_argument("--views", type=int, default=64, help="number of held-out view pairs")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0], help="classifier-free guidance scales to evaluate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    t0 = time.time()
    prior = load_view_prior(args.prior)
    data = held_out_pairs(args.views)
    reference = data["reference"].float() / 255.0
    target = data["target"].float() / 255.0
    result = {"baseline (reference view)": novel_view_scores(reference, target, data["target_mask"], data["background"])}
    for scale in args.guidance:
        pred = torch.cat([
            prior.sample(reference[i:i + 32], data["camera"][i:i + 32], steps=args.steps, guidance_scale=scale,
                         generator=torch.Generator().manual_seed(args.seed + i))
            for i in range(0, len(reference), 32)
        ])
        result[f"prior, guidance {scale:g}"] = novel_view_scores(pred, target, data["target_mask"], data["background"])
    training = render_pairs(training_pairs(), 64, seed=4321, desc="rendering training pairs")
    uses = {
        "held_out": reference_use(prior, reference, target, data["camera"]),
        "training": reference_use(prior, training["reference"].float() / 255.0, training["target"].float() / 255.0, training["camera"]),
    }
    result["reference_use"] = {k: {"right": u.right, "wrong": u.wrong, "timestep": u.timestep} for k, u in uses.items()}
    result |= {"ddim_steps": args.steps, "wall_seconds": round(time.time() - t0, 1)}
    print("| method | PSNR (dB) | SSIM | mask IoU | views |\n|---|---|---|---|---|")
    for name, r in result.items():
        if isinstance(r, dict) and "psnr" in r:
            print(f"| {name} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['mask_iou']:.3f} | {r['views']} |")
    for k, u in uses.items():
        print(f"{k} pairs: {u}")
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
