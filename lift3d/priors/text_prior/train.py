"""Train the bundled text-to-image prior on the procedural world.

Seeded and resumable: the run directory holds ``state.pt`` (weights, EMA, optimizer,
step, RNG), ``samples/`` grids written as it goes, and finally ``prior/`` in diffusers layout.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from lift3d.priors.training import ema_update, epsilon_loss, keep_training, image_grid, prediction_target, warmup_cosine_lr
from lift3d.priors.text_prior.camera import BACKGROUND_KEY, MARKER_KEY, spherical_raymap
from lift3d.priors.text_prior.model import MAX_TOKENS, build_scheduler, build_text_encoder, build_tokenizer
from lift3d.priors.text_prior.model import build_unet as build_prior_unet
from lift3d.priors.world.catalog import caption, training_pairs
from lift3d.priors.world.render import render_objects, sample_views
from lift3d.prompts.view_dependent import VIEW_NAMES, VIEW_SUFFIXES, view_index
from lift3d.utils.io import atomic_save_torch, write_png


def render_dataset(n: int, seed: int, chunk: int = 256, background: tuple[float, float, float] | None = None) -> dict[str, torch.Tensor]:
    """Render ``n`` training images of random training pairs from random views, on random solid
    backgrounds or, given ``background``, all on that colour."""
    g = torch.Generator().manual_seed(seed)
    pairs = training_pairs()
    images, pair_ids, views, cameras = [], [], [], []
    for start in tqdm(range(0, n, chunk), desc="rendering world", unit="chunk"):
        b = min(chunk, n - start)
        ids = torch.randint(len(pairs), (b,), generator=g)
        view = sample_views(b, g)
        if background is not None:
            view.background = torch.tensor(background).expand(b, 3).clone()
        out = render_objects([pairs[i][1] for i in ids], [pairs[i][0] for i in ids], view)
        images.append((out.rgb * 255).round().to(torch.uint8).permute(0, 3, 1, 2))
        pair_ids.append(ids)
        views.append(view_index(view.elevation, view.azimuth))
        cameras.append(torch.stack([view.elevation, view.azimuth, view.distance, view.fovy], dim=-1))
    return {"images": torch.cat(images), "pair_ids": torch.cat(pair_ids), "views": torch.cat(views), "cameras": torch.cat(cameras)}


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
def sample(unet, text_encoder, tokenizer, scheduler_config, prompts: list[str], seed: int, steps: int = 50, cfg: float = 3.0,
           raymaps: torch.Tensor | None = None):
    """DDIM samples in [0, 1], (B, 3, H, W); ``raymaps``: (B, 6, H, W) cameras of a camera-conditioned UNet
    (:func:`lift3d.priors.text_prior.camera.camera_raymap`), given to both guidance branches."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(scheduler_config)
    sched.set_timesteps(steps)
    ids = tokenizer(prompts + [""] * len(prompts), padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids
    emb = text_encoder(ids).last_hidden_state
    g = torch.Generator().manual_seed(seed)
    res = unet.config.sample_size
    x = torch.randn(len(prompts), 3, res, res, generator=g)
    for t in sched.timesteps:
        inp = torch.cat([x, x]) if raymaps is None else torch.cat([torch.cat([x, raymaps], 1)] * 2)
        eps = unet(inp, t, encoder_hidden_states=emb).sample
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
    ap.add_argument("--camera", action="store_true", help="condition the UNet on the camera too (its ray map, concatenated to the input)")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="start from this prior's weights (diffusers layout, e.g. lift3d/priors/weights/text); the ray map's input weights added by --camera start at zero")
    ap.add_argument("--background", type=float, nargs=3, default=None, metavar=("R", "G", "B"),
                    help="render every training image on this background colour (in [0, 1]) instead of random ones; "
                         "a random background is most of what the noisiest timesteps cannot know, and drowns what the camera tells")
    ap.add_argument("--redraw-raymap-weights", action="store_true",
                    help="after --init-from, draw the input convolution's ray-map weights afresh (normal, with the spread of its image weights); "
                         "from zero they hardly grew, as nothing downstream used them yet")
    ap.add_argument("--warmup", type=int, default=200, help="learning-rate warm-up steps")
    ap.add_argument("--high-noise-fraction", type=float, default=0.0,
                    help="draw this fraction of each batch's timesteps from the noisiest 30 %% (t >= 700) instead of all of them: "
                         "there the noisy image no longer shows the object's outline, so only the conditioning (prompt, camera) can")
    ap.add_argument("--prediction-type", choices=("epsilon", "sample"), default="epsilon",
                    help="what the UNet predicts: ε (bundled:text) or x0 (sample: plain MSE on the clean image, which weights the noisiest "
                         "timesteps, where only the conditioning tells the object's outline, as much as the rest)")
    args = ap.parse_args(argv)
    if args.prediction_type != "epsilon" and args.snr_gamma is not None:
        ap.error("--snr-gamma weights an epsilon loss; drop it or use --prediction-type epsilon")
    if args.redraw_raymap_weights and not (args.camera and args.init_from):
        ap.error("--redraw-raymap-weights redraws the ray-map weights of a prior loaded by --init-from; add --camera and --init-from, or drop it")
    build_unet = functools.partial(build_prior_unet, camera_conditioned=args.camera)
    if args.export_only:
        st = torch.load(args.out / "state.pt", weights_only=False)
        unet, text_encoder = build_unet(), build_text_encoder()
        unet.load_state_dict(st["ema_unet"])
        text_encoder.load_state_dict(st["ema_text"])
        background = st.get("background", args.background)  # runs before 2026-12-06 did not record theirs
        export(args.out / "prior", unet, text_encoder, build_tokenizer(), build_scheduler(st.get("prediction_type", "epsilon")), args.camera, background)
        print(f"prior (EMA weights at step {st['step']}) written to {args.out / 'prior'}")
        return
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)

    data_path = args.out / "dataset.pt"
    if data_path.exists():
        data = torch.load(data_path)
    else:
        data = render_dataset(args.images, args.seed, background=args.background)
        atomic_save_torch(data, data_path)
    if args.camera and "cameras" not in data:
        raise SystemExit(f"{data_path} has no cameras (rendered by an older lift3d); delete it to render it again")

    tokenizer = build_tokenizer()
    text_encoder, unet, scheduler = build_text_encoder(), build_unet(), build_scheduler(args.prediction_type)
    if args.init_from is not None:
        init_from(args.init_from, unet, text_encoder)
        if args.redraw_raymap_weights:
            redraw_raymap_weights(unet, seed=args.seed)
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
        lr = warmup_cosine_lr(step, args.steps, args.lr, warmup=args.warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(n, (args.batch_size,), generator=g)
        x0 = data["images"][idx].float() / 127.5 - 1.0
        caps = captions_for(data["pair_ids"][idx], data["views"][idx], g, args.p_null, args.p_plain)
        ids = tokenizer(caps, padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids
        t = sample_timesteps(args.batch_size, scheduler.config.num_train_timesteps, args.high_noise_fraction, g)
        noise = torch.randn(x0.shape, generator=g)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        emb = text_encoder(ids).last_hidden_state
        if args.camera:
            el, az, dist, fovy = data["cameras"][idx].unbind(-1)
            xt = torch.cat([xt, spherical_raymap(el, az, dist, fovy, xt.shape[-1])], dim=1)
        pred = unet(xt, t, encoder_hidden_states=emb).sample
        if args.prediction_type == "epsilon":
            loss = epsilon_loss(pred, noise, a.flatten(), args.snr_gamma)
        else:
            loss = torch.nn.functional.mse_loss(pred, prediction_target(x0, noise, a, args.prediction_type))
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
                 "torch_rng": torch.get_rng_state(), "step": step, "wall": wall, "prediction_type": args.prediction_type,
                 "background": args.background},
                state_path,
            )
        if step % args.sample_every == 0 or step == args.steps:
            cams = sample_raymaps(len(sample_prompts), unet.config.sample_size) if args.camera else None
            imgs = sample(ema_unet, ema_text, tokenizer, scheduler.config, sample_prompts, seed=0, steps=args.sample_steps, raymaps=cams)
            write_png(args.out / "samples" / f"step{step:06d}.png", image_grid(imgs, 4))
    pbar.close()
    log.close()
    if step < args.steps:
        print(f"stopped after step {step} of {args.steps}; state saved in {state_path}, rerun the same command to resume")
        return
    export(args.out / "prior", ema_unet, ema_text, build_tokenizer(), scheduler, args.camera, args.background)  # fresh: the used one keeps its padding state
    (args.out / "train_info.json").write_text(json.dumps({"steps": step, "wall_seconds": wall, "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    print(f"prior written to {args.out / 'prior'}")


def sample_timesteps(n: int, total: int, high_noise_fraction: float, g: torch.Generator) -> torch.Tensor:
    """``n`` training timesteps, uniform over ``[0, total)``, except that each is drawn from the
    noisiest 30 % (``t >= 0.7 total``) with probability ``high_noise_fraction``."""
    t = torch.randint(0, total, (n,), generator=g)
    if high_noise_fraction > 0:
        high = torch.randint(int(0.7 * total), total, (n,), generator=g)
        t = torch.where(torch.rand(n, generator=g) < high_noise_fraction, high, t)
    return t


def sample_raymaps(n: int, resolution: int) -> torch.Tensor:
    """Cameras of the sample grids: elevation 15 degrees, distance 2.5, fovy 45, azimuths 0, 30, 60, 90 along each row of four."""
    az = torch.tensor([0.0, 30.0, 60.0, 90.0]).repeat((n + 3) // 4)[:n]
    return spherical_raymap(torch.full((n,), 15.0), az, torch.full((n,), 2.5), torch.full((n,), 45.0), resolution)


def init_from(path: Path, unet, text_encoder) -> None:
    """Load a prior's UNet and text encoder weights into ``unet`` and ``text_encoder``. A UNet
    with more input channels (a ray map after the image) gets the prior's input convolution on
    the image channels and zeros on the rest, so it starts as the prior it was loaded from."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    state = UNet2DConditionModel.from_pretrained(path, subfolder="unet").state_dict()
    weight = state["conv_in.weight"]
    wider = unet.conv_in.weight.shape[1] - weight.shape[1]
    if wider > 0:
        state["conv_in.weight"] = torch.cat([weight, weight.new_zeros(weight.shape[0], wider, *weight.shape[2:])], dim=1)
    try:
        unet.load_state_dict(state)
    except RuntimeError as exc:
        raise SystemExit(f"{path}'s UNet does not fit this one: {str(exc).splitlines()[0]}") from exc
    text_encoder.load_state_dict(CLIPTextModel.from_pretrained(path, subfolder="text_encoder").state_dict())


@torch.no_grad()
def redraw_raymap_weights(unet, seed: int = 0) -> None:
    """Draw the input convolution's weights on the channels after the image's 3 (a ray map) from a
    normal distribution with the standard deviation of its weights on the image channels."""
    weight = unet.conv_in.weight
    g = torch.Generator().manual_seed(seed)
    weight[:, 3:] = torch.randn(weight[:, 3:].shape, generator=g) * weight[:, :3].std().item()


def export(path: Path, unet, text_encoder, tokenizer, scheduler, camera: bool = False,
           background: tuple[float, float, float] | None = None) -> None:
    """Write the prior in diffusers layout; a ``camera`` prior's ``model_index.json`` says it takes a
    ray map, and a prior trained on one ``background`` colour records it (presets must render on it)."""
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
    if camera:
        index[MARKER_KEY] = "raymap"
    if background is not None:
        index[BACKGROUND_KEY] = list(background)
    (path / "model_index.json").write_text(json.dumps(index, indent=2))


if __name__ == "__main__":
    main()
