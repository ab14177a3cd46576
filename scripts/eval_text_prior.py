#!/usr/bin/env python
"""Score the bundled text prior with the evaluation classifier.

Samples every training caption and every held-out caption (50 DDIM steps, fixed seeds), and
reports the classifier's accuracy on colour and object, separately for the two sets.

With ``--silhouettes`` it also asks how well the prior knows the camera: every caption is sampled
for a random camera of the world's distribution (the caption carries that camera's view suffix,
and a camera-conditioned prior also gets its ray map), and each sample's foreground is
scored against the true object's mask from that camera (centre-and-scale-aligned IoU, as the
benchmarks score turntables), overall and per object. With ``--camera-check`` it measures whether
a camera-conditioned prior uses its camera (see :func:`camera_check`).

    python scripts/eval_text_prior.py --seeds 4 --guidance 2 --out lift3d/priors/weights/text/eval.json
    python scripts/eval_text_prior.py --prior lift3d/priors/weights/text-camera --camera-check --out lift3d/priors/weights/text-camera/eval.json
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
from lift3d.priors.text_prior.camera import is_camera_conditioned, spherical_raymap
from lift3d.priors.text_prior.train import sample
from lift3d.priors.world.catalog import HELD_OUT, caption, training_pairs
from lift3d.priors.world.render import render_objects, sample_views
from lift3d.prompts.view_dependent import VIEW_NAMES, VIEW_SUFFIXES, view_index
from lift3d.utils.io import atomic_write_text


def load(prior: Path):
    unet = UNet2DConditionModel.from_pretrained(prior, subfolder="unet").eval()
    text = CLIPTextModel.from_pretrained(prior / "text_encoder").eval()
    tok = AutoTokenizer.from_pretrained(prior / "tokenizer")
    sched = DDPMScheduler.from_pretrained(prior, subfolder="scheduler")
    return unet, text, tok, sched


def foreground(images: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """(B, H, W) pixels of (B, 3, H, W) samples on a solid background that differ from it; the
    background colour is the median of the border pixels."""
    border = torch.cat([images[:, :, 0], images[:, :, -1], images[:, :, :, 0], images[:, :, :, -1]], dim=-1)
    background = border.median(dim=-1).values
    return (images - background[:, :, None, None]).abs().amax(1) > threshold


def silhouettes(prior: Path, pairs: list[tuple[str, str]], seeds: int, steps: int, cfg: float) -> dict:
    """Aligned IoU of each sample's foreground with the true mask from the camera it was asked for."""
    from lift3d.eval.novel_view import mask_iou
    from lift3d.eval.turntable import align_to

    unet, text, tok, sched = load(prior)
    camera = is_camera_conditioned(prior)
    per_kind: dict[str, list[float]] = {}
    for seed in range(seeds):
        view = sample_views(len(pairs), torch.Generator().manual_seed(1000 + seed))
        bins = view_index(view.elevation, view.azimuth).tolist()
        prompts = [caption(c, k) + VIEW_SUFFIXES[VIEW_NAMES[v]] for (c, k), v in zip(pairs, bins)]
        cams = spherical_raymap(view.elevation, view.azimuth, view.distance, view.fovy, unet.config.sample_size) if camera else None
        images = sample(unet, text, tok, sched.config, prompts, seed=seed, steps=steps, cfg=cfg, raymaps=cams)
        truth = render_objects([k for _, k in pairs], [c for c, _ in pairs], view).mask
        fg = foreground(images)
        for (_, k), f, m in zip(pairs, fg, truth):
            per_kind.setdefault(k, []).append(mask_iou(align_to(f.float(), m), m))
    scores = {k: sum(v) / len(v) for k, v in sorted(per_kind.items())}
    every = [x for v in per_kind.values() for x in v]
    return {"mean": sum(every) / len(every), "per_object": scores, "camera_conditioned": camera, "samples": len(every)}


@torch.no_grad()
def camera_check(prior: Path, timesteps: tuple[int, ...] = (500, 700, 850, 950), turns: tuple[float, ...] = (0.0, 45.0, 90.0),
                 n: int = 64, seed: int = 5) -> dict:
    """Whether a camera-conditioned prior uses its camera: the mean squared error of its clean-image
    estimate on the object's pixels, for world renders of the objects that look different from
    every azimuth (cube, house, mug, snowman) noised to each timestep, told the right camera and
    the camera turned by each of ``turns`` degrees. Renders are on the prior's training background."""
    from lift3d.guidance.noise_prediction import to_epsilon
    from lift3d.priors.text_prior.camera import training_background

    unet, text, tok, sched = load(prior)
    kinds = ["cube", "house", "mug", "snowman"] * (n // 4)
    colours = ["green", "red", "pink", "white"] * (n // 4)
    g = torch.Generator().manual_seed(seed)
    view = sample_views(len(kinds), g)
    background = training_background(prior)
    if background is not None:
        view.background = torch.tensor(background).expand(len(kinds), 3).clone()
    out = render_objects(kinds, colours, view)
    x0 = out.rgb.permute(0, 3, 1, 2) * 2 - 1
    mask = out.mask[:, None].float()
    bins = view_index(view.elevation, view.azimuth).tolist()
    prompts = [caption(c, k) + VIEW_SUFFIXES[VIEW_NAMES[v]] for c, k, v in zip(colours, kinds, bins)]
    emb = text(tok(prompts, padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids).last_hidden_state
    rows = {}
    for t in timesteps:
        a = sched.alphas_cumprod[t].view(1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=g)
        errors = []
        for turn in turns:
            ray = spherical_raymap(view.elevation, view.azimuth + turn, view.distance, view.fovy, x0.shape[-1])
            pred = unet(torch.cat([noisy, ray], 1), torch.full((len(kinds),), t), encoder_hidden_states=emb).sample
            eps = to_epsilon(pred, noisy, a, sched.config.prediction_type)
            estimate = (noisy - (1 - a).sqrt() * eps) / a.sqrt()
            errors.append((((estimate - x0) ** 2) * mask).sum().item() / (3 * mask.sum().item()))
        rows[str(t)] = dict(zip((f"turned {turn:g}" if turn else "right" for turn in turns), errors))
    return {"x0 error on the object": rows, "renders": len(kinds), "background": background}


def evaluate(prior: Path, pairs: list[tuple[str, str]], seeds: int, steps: int, cfg: float) -> dict:
    unet, text, tok, sched = load(prior)
    cameras = None
    if is_camera_conditioned(prior):  # the front view the captions' plain form stands for
        n = len(pairs)
        cameras = spherical_raymap(torch.full((n,), 15.0), torch.zeros(n), torch.full((n,), 2.5), torch.full((n,), 45.0), unet.config.sample_size)
    clf = load_classifier()
    hits = {"colour": 0, "kind": 0, "both": 0}
    n = 0
    for seed in range(seeds):
        prompts = [caption(c, k) for c, k in pairs]
        images = sample(unet, text, tok, sched.config, prompts, seed=seed, steps=steps, cfg=cfg, raymaps=cameras)
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
    ap.add_argument("--silhouettes", action="store_true", help="also score samples' silhouettes against the truth from the cameras asked for")
    ap.add_argument("--camera-check", action="store_true",
                    help="also measure how much a camera-conditioned prior's clean-image estimate worsens when told a turned camera")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    t0 = time.time()
    result = {
        "training captions": evaluate(args.prior, training_pairs(), args.seeds, args.steps, args.guidance),
        "held-out captions": evaluate(args.prior, list(HELD_OUT), args.seeds, args.steps, args.guidance),
        "ddim_steps": args.steps, "guidance_scale": args.guidance, "seeds": args.seeds, "wall_seconds": None,
    }
    if args.silhouettes:
        result["silhouette IoU, training captions"] = silhouettes(args.prior, training_pairs(), args.seeds, args.steps, args.guidance)
    if args.camera_check:
        result["camera check"] = camera_check(args.prior)
    result["wall_seconds"] = round(time.time() - t0, 1)
    print(f"| captions | colour acc | object acc | both | samples |\n|---|---|---|---|---|")
    for name in ("training captions", "held-out captions"):
        r = result[name]
        print(f"| {name} | {r['colour']:.3f} | {r['kind']:.3f} | {r['both']:.3f} | {r['samples']} |")
    if args.silhouettes:
        r = result["silhouette IoU, training captions"]
        print(f"\nsilhouette IoU against the truth from the asked camera: mean {r['mean']:.3f} over {r['samples']} samples")
        print("| object | " + " | ".join(r["per_object"]) + " |\n|---|" + "---|" * len(r["per_object"]))
        print("| IoU | " + " | ".join(f"{v:.3f}" for v in r["per_object"].values()) + " |")
    if args.camera_check:
        rows = result["camera check"]["x0 error on the object"]
        names = list(next(iter(rows.values())))
        print("\nx0 error on the object's pixels, told the right camera or a turned one")
        print("| t | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
        for t, r in rows.items():
            print(f"| {t} | " + " | ".join(f"{v:.4f}" for v in r.values()) + " |")
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
