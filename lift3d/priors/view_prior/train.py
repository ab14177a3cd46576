"""Train the bundled view-conditioned (Zero-1-to-3 style) prior on the procedural world.

Each training example is a pair of views of one training object under the same light,
background and field of view: the reference view conditions, the target view is denoised.
Seeded and resumable like the text prior: ``state.pt``, ``loss.csv``, ``samples/`` (rows of
reference, prediction, ground truth), and finally ``prior/`` in diffusers-port layout.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from lift3d.guidance.view_prior import ViewPrior, write_model_index
from lift3d.priors.training import ema_update, epsilon_loss, image_grid, keep_training, prediction_target, warmup_cosine_lr
from lift3d.priors.view_prior.diagnostics import reference_use
from lift3d.priors.view_prior.model import (
    CCProjection,
    build_feature_extractor,
    build_image_encoder,
    build_scheduler,
    build_unet,
    relative_camera,
    view_context,
)
from lift3d.priors.world import conventions as conv
from lift3d.priors.world.catalog import HELD_OUT, training_pairs
from lift3d.priors.world.render import WorldView, render_objects, sample_views
from lift3d.data.camera_math import sample_elevation, uniform
from lift3d.utils.io import atomic_save_torch, write_png


def sample_view_pairs(bsz: int, generator: torch.Generator) -> tuple[WorldView, WorldView]:
    """Reference and target cameras sharing light, background, shading and field of view."""
    ref = sample_views(bsz, generator)
    tgt = WorldView(
        elevation=sample_elevation(bsz, *conv.ELEVATION_RANGE, generator=generator),
        azimuth=uniform(bsz, *conv.AZIMUTH_RANGE, generator=generator),
        distance=uniform(bsz, *conv.DISTANCE_RANGE, generator=generator),
        fovy=ref.fovy,
        light_position=ref.light_position,
        background=ref.background,
        unlit=ref.unlit,
    )
    return ref, tgt


def render_pairs(pairs: list[tuple[str, str]], n: int, seed: int, chunk: int = 256, desc: str = "rendering view pairs") -> dict[str, torch.Tensor]:
    """``n`` (reference, target) renders of random objects from ``pairs``, uint8, with cameras and masks."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("reference", "target", "camera", "pair_ids", "background", "target_mask")}
    for start in tqdm(range(0, n, chunk), desc=desc, unit="chunk"):
        b = min(chunk, n - start)
        ids = torch.randint(len(pairs), (b,), generator=g)
        ref, tgt = sample_view_pairs(b, g)
        kinds, colours = [pairs[i][1] for i in ids], [pairs[i][0] for i in ids]
        r_ref, r_tgt = render_objects(kinds, colours, ref), render_objects(kinds, colours, tgt)
        out["reference"].append((r_ref.rgb * 255).round().to(torch.uint8).permute(0, 3, 1, 2))
        out["target"].append((r_tgt.rgb * 255).round().to(torch.uint8).permute(0, 3, 1, 2))
        out["camera"].append(relative_camera(ref.elevation, ref.azimuth, ref.distance, tgt.elevation, tgt.azimuth, tgt.distance))
        out["pair_ids"].append(ids)
        out["background"].append(ref.background)
        out["target_mask"].append(r_tgt.mask)
    return {k: torch.cat(v) for k, v in out.items()}


def held_out_pairs(n: int, seed: int = 1234) -> dict[str, torch.Tensor]:
    """The fixed evaluation set: view pairs of the held-out (colour, object) pairs."""
    return render_pairs(list(HELD_OUT), n, seed, desc="rendering held-out pairs")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train lift3d's bundled view-conditioned prior.")
    ap.add_argument("--out", type=Path, required=True, help="run directory (resumed if it exists)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--pairs", type=int, default=16000, help="size of the rendered training set (view pairs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sample-every", type=int, default=250)
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--p-uncond", type=float, default=0.1, help="conditioning dropout for classifier-free guidance")
    ap.add_argument("--sample-steps", type=int, default=50, help="DDIM steps of the sample grids")
    ap.add_argument("--prediction-type", choices=("sample", "v_prediction", "epsilon"), default="sample",
                    help="what the UNet predicts: x0 (sample, the shipped recipe), v or epsilon")
    ap.add_argument("--uncond-drop", choices=("context", "both"), default="context",
                    help="what conditioning dropout removes: the context token only (the unconditional branch keeps the reference) or both, as Zero123")
    ap.add_argument("--snr-gamma", type=float, default=None, help="epsilon prediction only: weight the loss by min(SNR, gamma)/SNR (Min-SNR-gamma; 5 is usual); default: plain MSE")
    ap.add_argument("--stop-after", type=int, default=None, help="stop after this many steps of this invocation (state saved; rerun to resume)")
    ap.add_argument("--export-only", action="store_true", help="write prior/ from the run's state.pt and stop")
    args = ap.parse_args(argv)
    if args.snr_gamma is not None and args.prediction_type != "epsilon":
        ap.error("--snr-gamma weights an epsilon loss; drop it or use --prediction-type epsilon")
    recipe = {"prediction_type": args.prediction_type, "uncond_drop": args.uncond_drop}
    torch.set_num_threads(args.threads)
    state_path = args.out / "state.pt"
    if args.export_only:
        st = torch.load(state_path, weights_only=False)
        nets = build_nets(st.get("recipe", {}).get("uncond_drop", "both") == "context")
        for name, net in nets.items():
            net.load_state_dict(st["ema"][name])
        export(args.out / "prior", nets, st.get("recipe", {}).get("prediction_type", "epsilon"))
        print(f"prior (EMA weights at step {st['step']}) written to {args.out / 'prior'}")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    data_path = args.out / "dataset.pt"
    if data_path.exists():
        data = torch.load(data_path)
    else:
        data = render_pairs(training_pairs(), args.pairs, args.seed)
        atomic_save_torch(data, data_path)
    preview = held_out_pairs(8, seed=99)
    probe = {k: v[:16] for k, v in data.items()}  # training pairs for the reference-use diagnostic

    keeps_reference = args.uncond_drop == "context"
    nets, ema = build_nets(keeps_reference), build_nets(keeps_reference)
    for name in nets:
        ema[name].load_state_dict(nets[name].state_dict())
    params = [p for net in nets.values() for p in net.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    scheduler = build_scheduler(args.prediction_type)
    g = torch.Generator().manual_seed(args.seed + 1)
    step, wall = 0, 0.0
    if state_path.exists():
        st = torch.load(state_path, weights_only=False)
        if st.get("recipe", recipe) != recipe:
            raise SystemExit(f"{state_path} was trained with {st['recipe']}, not {recipe}; use another --out or the same options")
        for name in nets:
            nets[name].load_state_dict(st["nets"][name])
            ema[name].load_state_dict(st["ema"][name])
        opt.load_state_dict(st["opt"]); g.set_state(st["gen"]); torch.set_rng_state(st["torch_rng"])
        step, wall = st["step"], st["wall"]
    alphas = scheduler.alphas_cumprod
    n = data["reference"].shape[0]
    log = open(args.out / "loss.csv", "a")
    pbar = tqdm(total=args.steps, initial=step, desc="training view prior", unit="step")
    loss_avg = None
    start = step
    while keep_training(step, args.steps, start, args.stop_after):
        t0 = time.time()
        lr = warmup_cosine_lr(step, args.steps, args.lr)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(n, (args.batch_size,), generator=g)
        ref = data["reference"][idx].float() / 255.0
        x0 = data["target"][idx].float() / 127.5 - 1.0
        keep = (torch.rand(args.batch_size, generator=g) >= args.p_uncond).float()
        t = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch_size,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        context = view_context(nets["image_encoder"], nets["cc_projection"], ref, data["camera"][idx]) * keep.view(-1, 1, 1)
        concat = (ref * 2 - 1) * (1.0 if keeps_reference else keep.view(-1, 1, 1, 1))
        pred = nets["unet"](torch.cat([xt, concat], 1), t, encoder_hidden_states=context).sample
        if args.prediction_type == "epsilon":
            loss = epsilon_loss(pred, noise, a.flatten(), args.snr_gamma)
        else:
            loss = torch.nn.functional.mse_loss(pred, prediction_target(x0, noise, a, args.prediction_type))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema_update([(nets[k], ema[k]) for k in nets], step)
        step += 1
        wall += time.time() - t0
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        log.write(f"{step},{loss.item():.5f},{wall:.1f}\n")
        pbar.set_postfix(loss=f"{loss_avg:.4f}", lr=f"{lr:.1e}")
        pbar.update(1)
        if step % args.save_every == 0 or not keep_training(step, args.steps, start, args.stop_after):
            log.flush()
            atomic_save_torch(
                {"nets": {k: v.state_dict() for k, v in nets.items()}, "ema": {k: v.state_dict() for k, v in ema.items()},
                 "opt": opt.state_dict(), "gen": g.get_state(), "torch_rng": torch.get_rng_state(), "step": step, "wall": wall,
                 "recipe": recipe},
                state_path,
            )
        if step % args.sample_every == 0 or step == args.steps:
            prior = as_view_prior(ema, scheduler)
            ref_p = preview["reference"].float() / 255.0
            pred_p = prior.sample(ref_p, preview["camera"], steps=args.sample_steps, generator=torch.Generator().manual_seed(0))
            rows = torch.cat([ref_p, pred_p, preview["target"].float() / 255.0])
            write_png(args.out / "samples" / f"step{step:06d}.png", image_grid(rows, len(ref_p)))
            uses = {
                "train": reference_use(prior, probe["reference"].float() / 255.0, probe["target"].float() / 255.0, probe["camera"]),
                "held_out": reference_use(prior, ref_p, preview["target"].float() / 255.0, preview["camera"]),
            }
            with open(args.out / "reference_use.csv", "a") as f:
                f.write(f"{step},{uses['train'].right:.4f},{uses['train'].wrong:.4f},{uses['held_out'].right:.4f},{uses['held_out'].wrong:.4f}\n")
            tqdm.write(f"step {step}: training pairs {uses['train']}; held-out pairs {uses['held_out']}")
    pbar.close()
    log.close()
    if step < args.steps:
        print(f"stopped after step {step} of {args.steps}; state saved in {state_path}, rerun the same command to resume")
        return
    export(args.out / "prior", ema, args.prediction_type)
    (args.out / "train_info.json").write_text(json.dumps({"steps": step, "wall_seconds": wall, "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    print(f"prior written to {args.out / 'prior'}")


def build_nets(unconditional_keeps_reference: bool = True) -> dict[str, torch.nn.Module]:
    return {"unet": build_unet(), "image_encoder": build_image_encoder(),
            "cc_projection": CCProjection(unconditional_keeps_reference=unconditional_keeps_reference)}


def as_view_prior(nets: dict[str, torch.nn.Module], scheduler) -> ViewPrior:
    return ViewPrior(
        unet=nets["unet"], image_encoder=nets["image_encoder"], cc_projection=nets["cc_projection"],
        scheduler_config=dict(scheduler.config), alphas_cumprod=scheduler.alphas_cumprod.clone().float(),
    ).eval()


def export(path: Path, nets: dict[str, torch.nn.Module], prediction_type: str) -> None:
    """Write the prior in diffusers-port layout."""
    path.mkdir(parents=True, exist_ok=True)
    nets["unet"].save_pretrained(path / "unet")
    nets["image_encoder"].save_pretrained(path / "image_encoder")
    nets["cc_projection"].save_pretrained(path / "cc_projection")
    build_feature_extractor().save_pretrained(path / "feature_extractor")
    build_scheduler(prediction_type).save_pretrained(path / "scheduler")
    write_model_index(path, latent=False)


if __name__ == "__main__":
    main()
