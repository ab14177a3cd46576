"""Train the bundled text-to-image prior on the procedural world.

Seeded and resumable: the run directory holds ``state.pt`` (weights, EMA, optimizer,
step, RNG), ``samples/`` grids written as it goes, and finally ``prior/`` in diffusers layout.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from lift3d.priors.training import ema_update, epsilon_loss, keep_training, image_grid, warmup_cosine_lr
from lift3d.priors.text_prior.model import MAX_TOKENS, build_scheduler, build_text_encoder, build_tokenizer, build_unet
from lift3d.priors.world.catalog import caption, training_pairs
from lift3d.priors.world.render import render_objects, sample_views
from lift3d.prompts.view_dependent import VIEW_NAMES, VIEW_SUFFIXES, view_index
from lift3d.utils.io import atomic_save_torch, write_png


def render_dataset(n: int, seed: int, chunk: int = 256) -> dict[str, torch.Tensor]:
    """Render ``n`` training images of random training pairs from random views."""
    g = torch.Generator().manual_seed(seed)
    pairs = training_pairs()
    images, pair_ids, views = [], [], []
    for start in tqdm(range(0, n, chunk), desc="rendering world", unit="chunk"):
        b = min(chunk, n - start)
        ids = torch.randint(len(pairs), (b,), generator=g)
        view = sample_views(b, g)
        out = render_objects([pairs[i][1] for i in ids], [pairs[i][0] for i in ids], view)
        images.append((out.rgb * 255).round().to(torch.uint8).permute(0, 3, 1, 2))
        pair_ids.append(ids)
        views.append(view_index(view.elevation, view.azimuth))
    return {"images": torch.cat(images), "pair_ids": torch.cat(pair_ids), "views": torch.cat(views)}


def captions_for(pair_ids: torch.Tensor, views: torch.Tensor, g: torch.Generator, p_null: float, p_plain: float) -> list[str]:
    """Captions with dropout: empty (for CFG), plain, or with the view suffix."""
    pairs = training_pairs()
    u = torch.rand(len(pair_ids), generator=g)
    out = []
    for i, (pid, v) in enumerate(zip(pair_ids.tolist(), views.tolist())):
        base = caption(*pairs[pid])
        if u[i] < p_null:
            out.append("")
        elif u[i] < p_null + p_plain:
            out.append(base)
        else:
            out.append(base + VIEW_SUFFIXES[VIEW_NAMES[v]])
    return out


@torch.no_grad()
def sample(unet, text_encoder, tokenizer, scheduler_config, prompts: list[str], seed: int, steps: int = 50, cfg: float = 3.0):
    """DDIM samples in [0, 1], (B, 3, H, W)."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(scheduler_config)
    sched.set_timesteps(steps)
    ids = tokenizer(prompts + [""] * len(prompts), padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids
    emb = text_encoder(ids).last_hidden_state
    g = torch.Generator().manual_seed(seed)
    res = unet.config.sample_size
    x = torch.randn(len(prompts), 3, res, res, generator=g)
    for t in sched.timesteps:
        eps = unet(torch.cat([x, x]), t, encoder_hidden_states=emb).sample
        cond, uncond = eps.chunk(2)
        x = sched.step(uncond + cfg * (cond - uncond), t, x).prev_sample
    return ((x.clamp(-1, 1) + 1) / 2).cpu()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train lift3d's bundled text-to-image prior.")
    ap.add_argument("--out", type=Path, required=True, help="run directory (resumed if it exists)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--images", type=int, default=40000, help="size of the rendered training set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sample-every", type=int, default=500)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--p-null", type=float, default=0.12, help="caption dropout for classifier-free guidance")
    ap.add_argument("--p-plain", type=float, default=0.3, help="fraction of captions without a view suffix")
    ap.add_argument("--sample-steps", type=int, default=50, help="DDIM steps of the sample grids")
    ap.add_argument("--snr-gamma", type=float, default=None, help="weight the loss by min(SNR, gamma)/SNR (Min-SNR-gamma; 5 is usual); default: plain MSE")
    ap.add_argument("--stop-after", type=int, default=None, help="stop after this many steps of this invocation (state saved; rerun to resume)")
    ap.add_argument("--export-only", action="store_true", help="write prior/ from the run's state.pt and stop")
    args = ap.parse_args(argv)
    if args.export_only:
        st = torch.load(args.out / "state.pt", weights_only=False)
        unet, text_encoder = build_unet(), build_text_encoder()
        unet.load_state_dict(st["ema_unet"])
        text_encoder.load_state_dict(st["ema_text"])
        export(args.out / "prior", unet, text_encoder, build_tokenizer(), build_scheduler())
        print(f"prior (EMA weights at step {st['step']}) written to {args.out / 'prior'}")
        return
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)

    data_path = args.out / "dataset.pt"
    if data_path.exists():
        data = torch.load(data_path)
    else:
        data = render_dataset(args.images, args.seed)
        atomic_save_torch(data, data_path)

    tokenizer = build_tokenizer()
    text_encoder, unet, scheduler = build_text_encoder(), build_unet(), build_scheduler()
    ema_unet, ema_text = build_unet(), build_text_encoder()
    ema_unet.load_state_dict(unet.state_dict())
    ema_text.load_state_dict(text_encoder.state_dict())
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed + 1)
    step, wall = 0, 0.0
    state_path = args.out / "state.pt"
    if state_path.exists():
        st = torch.load(state_path, weights_only=False)
        unet.load_state_dict(st["unet"]); text_encoder.load_state_dict(st["text_encoder"])
        ema_unet.load_state_dict(st["ema_unet"]); ema_text.load_state_dict(st["ema_text"])
        opt.load_state_dict(st["opt"]); g.set_state(st["gen"]); torch.set_rng_state(st["torch_rng"])
        step, wall = st["step"], st["wall"]
    alphas = scheduler.alphas_cumprod
    n = data["images"].shape[0]
    log = open(args.out / "loss.csv", "a")
    pbar = tqdm(total=args.steps, initial=step, desc="training text prior", unit="step")
    sample_prompts = [caption(c, k) for c, k in [("red", "house"), ("blue", "sphere"), ("green", "cube"), ("yellow", "torus"),
                                                 ("white", "snowman"), ("pink", "mug"), ("orange", "cone"), ("purple", "cylinder"),
                                                 ("green", "house"), ("blue", "snowman"), ("yellow", "mug"), ("purple", "cube")]]
    loss_avg = None
    start = step
    while keep_training(step, args.steps, start, args.stop_after):
        t0 = time.time()
        lr = warmup_cosine_lr(step, args.steps, args.lr)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(n, (args.batch_size,), generator=g)
        x0 = data["images"][idx].float() / 127.5 - 1.0
        caps = captions_for(data["pair_ids"][idx], data["views"][idx], g, args.p_null, args.p_plain)
        ids = tokenizer(caps, padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids
        t = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch_size,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        emb = text_encoder(ids).last_hidden_state
        pred = unet(xt, t, encoder_hidden_states=emb).sample
        loss = epsilon_loss(pred, noise, a.flatten(), args.snr_gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema_update([(unet, ema_unet), (text_encoder, ema_text)], step)
        step += 1
        wall += time.time() - t0
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        log.write(f"{step},{loss.item():.5f},{wall:.1f}\n")
        pbar.set_postfix(loss=f"{loss_avg:.4f}", lr=f"{lr:.1e}")
        pbar.update(1)
        if step % args.save_every == 0 or not keep_training(step, args.steps, start, args.stop_after):
            log.flush()
            atomic_save_torch(
                {"unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(), "ema_unet": ema_unet.state_dict(),
                 "ema_text": ema_text.state_dict(), "opt": opt.state_dict(), "gen": g.get_state(),
                 "torch_rng": torch.get_rng_state(), "step": step, "wall": wall},
                state_path,
            )
        if step % args.sample_every == 0 or step == args.steps:
            imgs = sample(ema_unet, ema_text, tokenizer, scheduler.config, sample_prompts, seed=0, steps=args.sample_steps)
            write_png(args.out / "samples" / f"step{step:06d}.png", image_grid(imgs, 4))
    pbar.close()
    log.close()
    if step < args.steps:
        print(f"stopped after step {step} of {args.steps}; state saved in {state_path}, rerun the same command to resume")
        return
    export(args.out / "prior", ema_unet, ema_text, build_tokenizer(), scheduler)  # fresh: the used one keeps its padding state
    (args.out / "train_info.json").write_text(json.dumps({"steps": step, "wall_seconds": wall, "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    print(f"prior written to {args.out / 'prior'}")


def export(path: Path, unet, text_encoder, tokenizer, scheduler) -> None:
    """Write the prior in diffusers layout."""
    import diffusers

    path.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(path / "unet")
    text_encoder.save_pretrained(path / "text_encoder")
    tokenizer.save_pretrained(path / "tokenizer")
    scheduler.save_pretrained(path / "scheduler")
    index = {
        "_class_name": "Lift3DTextToImagePipeline",
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "DDPMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "unet": ["diffusers", "UNet2DConditionModel"],
    }
    (path / "model_index.json").write_text(json.dumps(index, indent=2))


if __name__ == "__main__":
    main()
