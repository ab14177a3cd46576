#!/usr/bin/env python
"""Score the bundled text prior with the evaluation classifier.

Samples every training caption and every held-out caption (50 DDIM steps, fixed seeds), and
reports the classifier's accuracy on colour and object, separately for the two sets.

    python scripts/eval_text_prior.py --seeds 4 --guidance 2 --out lift3d/priors/weights/text/eval.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, CLIPTextModel
from diffusers import DDPMScheduler, UNet2DConditionModel

from lift3d.eval.world_classifier import load_classifier
from lift3d.priors import BUNDLED
from lift3d.priors.text_prior.train import sample
from lift3d.priors.world.catalog import HELD_OUT, caption, training_pairs
from lift3d.utils.io import atomic_write_text


def evaluate(prior: Path, pairs: list[tuple[str, str]], seeds: int, steps: int, cfg: float) -> dict:
    unet = UNet2DConditionModel.from_pretrained(prior, subfolder="unet").eval()
    text = CLIPTextModel.from_pretrained(prior / "text_encoder").eval()
    tok = AutoTokenizer.from_pretrained(prior / "tokenizer")
    sched = DDPMScheduler.from_pretrained(prior, subfolder="scheduler")
    clf = load_classifier()
    hits = {"colour": 0, "kind": 0, "both": 0}
    n = 0
    for seed in range(seeds):
        prompts = [caption(c, k) for c, k in pairs]
        images = sample(unet, text, tok, sched.config, prompts, seed=seed, steps=steps, cfg=cfg)
        pred = clf.predict(images)
        for (c, k), pc, pk in zip(pairs, pred["colour"], pred["kind"]):
            hits["colour"] += pc == c
            hits["kind"] += pk == k
            hits["both"] += (pc == c) and (pk == k)
            n += 1
    return {key: value / n for key, value in hits.items()} | {"samples": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", type=Path, default=BUNDLED["text"])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale of the samples (2 is best for the shipped prior; see its model card)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    t0 = time.time()
    result = {
        "training captions": evaluate(args.prior, training_pairs(), args.seeds, args.steps, args.guidance),
        "held-out captions": evaluate(args.prior, list(HELD_OUT), args.seeds, args.steps, args.guidance),
        "ddim_steps": args.steps, "guidance_scale": args.guidance, "seeds": args.seeds, "wall_seconds": None,
    }
    result["wall_seconds"] = round(time.time() - t0, 1)
    print(f"| captions | colour acc | object acc | both | samples |\n|---|---|---|---|---|")
    for name in ("training captions", "held-out captions"):
        r = result[name]
        print(f"| {name} | {r['colour']:.3f} | {r['kind']:.3f} | {r['both']:.3f} | {r['samples']} |")
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
