"""Convert an original Zero-1-to-3 checkpoint (LDM ``.ckpt``) to the diffusers layout lift3d loads.

Zero123, Zero123-XL and Stable Zero123 ship as one LatentDiffusion ``.ckpt``: a Stable Diffusion
1.x UNet with 8 input channels (noisy latent ++ reference latent), its VAE, a frozen OpenAI CLIP
ViT-L/14 image encoder (``cond_stage_model``) and ``cc_projection`` (image embedding ++ relative
camera → context). This writes ``unet/``, ``vae/``, ``image_encoder/``, ``cc_projection/``,
``feature_extractor/``, ``scheduler/`` and ``model_index.json``, using diffusers' own LDM
conversion helpers for the UNet and the VAE; the CLIP visual tower is renamed key by key.

    python -m extern.zero123_convert --ckpt zero123-xl.ckpt --out /path/to/zero123-xl-diffusers
    python -m extern.zero123_convert --ckpt stable_zero123.ckpt --out /path/to/stable-zero123 --convention stable-zero123

The output is written to a temporary directory next to ``--out`` and renamed when complete.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import tempfile
from pathlib import Path

import torch

ZERO123_CONFIG: dict = {
    "model": {
        "params": {
            "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000, "scale_factor": 0.18215,
            "unet_config": {"params": {
                "image_size": 32, "in_channels": 8, "out_channels": 4, "model_channels": 320, "attention_resolutions": [4, 2, 1],
                "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4], "num_heads": 8, "use_spatial_transformer": True,
                "transformer_depth": 1, "context_dim": 768, "use_checkpoint": True, "legacy": False,
            }},
            "first_stage_config": {"params": {"embed_dim": 4, "ddconfig": {
                "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
            }}},
        }
    }
}
"""The architecture of the original ``sd-objaverse-finetune-c_concat-256.yaml`` (Zero123, Zero123-XL, Stable Zero123)."""

CLIP_PREFIX = "cond_stage_model.model.visual."
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ConversionError(Exception):
    """A checkpoint this converter cannot read; the message says what is missing."""


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of an LDM ``.ckpt`` (or ``.safetensors``)."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path} does not exist; give the original Zero123 .ckpt")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    ckpt = torch.load(path, map_location="cpu", weights_only=False)  # original LDM checkpoints pickle their trainer state
    return ckpt.get("state_dict", ckpt)


def use_ema(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace the UNet weights by their EMA (``model_ema.*``, dots removed) where the checkpoint has them."""
    ema = {k[len("model_ema."):]: v for k, v in state.items() if k.startswith("model_ema.") and k not in ("model_ema.decay", "model_ema.num_updates")}
    if not ema:
        return state
    out = dict(state)
    for key in state:
        if key.startswith("model.diffusion_model."):
            flat = "diffusion_model" + key[len("model.diffusion_model"):].replace(".", "")
            if flat in ema:
                out[key] = ema[flat]
    return out


def convert_unet(state: dict, config: dict):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, create_unet_diffusers_config_from_ldm

    unet_params = config["model"]["params"]["unet_config"]["params"]
    unet_config = create_unet_diffusers_config_from_ldm(config, state)
    unet_config["sample_size"] = unet_params["image_size"]
    unet = UNet2DConditionModel(**unet_config)
    _load_exactly(unet, convert_ldm_unet_checkpoint(state, unet_config), "unet")
    return unet


def convert_vae(state: dict, config: dict):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint, create_vae_diffusers_config_from_ldm

    vae_config = create_vae_diffusers_config_from_ldm(config, state)
    vae_config["sample_size"] = config["model"]["params"]["first_stage_config"]["params"]["ddconfig"]["resolution"]
    vae = AutoencoderKL(**vae_config)
    _load_exactly(vae, convert_ldm_vae_checkpoint(state, vae_config), "vae")
    return vae


def clip_visual_to_hf(state: dict, prefix: str = CLIP_PREFIX) -> tuple[dict, dict]:
    """(HF ``CLIPVisionConfig`` kwargs, state dict of ``CLIPVisionModelWithProjection``) from OpenAI CLIP visual weights."""
    v = {k[len(prefix):]: t for k, t in state.items() if k.startswith(prefix)}
    if "conv1.weight" not in v:
        raise ConversionError(f"no CLIP image encoder in the checkpoint (no {prefix}conv1.weight); is this a Zero123 checkpoint?")
    width, _, patch, _ = v["conv1.weight"].shape
    layers = len({k.split(".")[2] for k in v if k.startswith("transformer.resblocks.")})
    grid = int(round((v["positional_embedding"].shape[0] - 1) ** 0.5))
    cfg = {
        "hidden_size": width, "intermediate_size": v["transformer.resblocks.0.mlp.c_fc.weight"].shape[0], "num_hidden_layers": layers,
        "num_attention_heads": max(1, width // 64), "image_size": grid * patch, "patch_size": patch,
        "projection_dim": v["proj"].shape[1], "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
    }
    out = {
        "vision_model.embeddings.class_embedding": v["class_embedding"],
        "vision_model.embeddings.patch_embedding.weight": v["conv1.weight"],
        "vision_model.embeddings.position_embedding.weight": v["positional_embedding"],
        "visual_projection.weight": v["proj"].t().contiguous(),
    }
    for ours, theirs in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for p in ("weight", "bias"):
            out[f"vision_model.{ours}.{p}"] = v[f"{theirs}.{p}"]
    for i in range(layers):
        src, dst = f"transformer.resblocks.{i}.", f"vision_model.encoder.layers.{i}."
        for p in ("weight", "bias"):
            q, k, val = v[src + f"attn.in_proj_{p}"].chunk(3, dim=0)
            out[dst + f"self_attn.q_proj.{p}"], out[dst + f"self_attn.k_proj.{p}"], out[dst + f"self_attn.v_proj.{p}"] = q, k, val
            out[dst + f"self_attn.out_proj.{p}"] = v[src + f"attn.out_proj.{p}"]
            out[dst + f"layer_norm1.{p}"] = v[src + f"ln_1.{p}"]
            out[dst + f"layer_norm2.{p}"] = v[src + f"ln_2.{p}"]
            out[dst + f"mlp.fc1.{p}"] = v[src + f"mlp.c_fc.{p}"]
            out[dst + f"mlp.fc2.{p}"] = v[src + f"mlp.c_proj.{p}"]
    return cfg, out


def convert_image_encoder(state: dict):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg, weights = clip_visual_to_hf(state)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg))
    _load_exactly(model, weights, "image_encoder", allow_missing=("vision_model.embeddings.position_ids",))
    return model


def convert_cc_projection(state: dict, camera_convention: str):
    from lift3d.priors.view_prior.model import CCProjection

    if "cc_projection.weight" not in state:
        raise ConversionError("no cc_projection in the checkpoint; is this a Zero123 checkpoint (not plain Stable Diffusion)?")
    out_channel, in_channel = state["cc_projection.weight"].shape
    proj = CCProjection(in_channel=in_channel, out_channel=out_channel, camera_convention=camera_convention)
    _load_exactly(proj, {"projection.weight": state["cc_projection.weight"], "projection.bias": state["cc_projection.bias"]}, "cc_projection")
    return proj


def _load_exactly(module: torch.nn.Module, weights: dict, name: str, allow_missing: tuple[str, ...] = ()) -> None:
    missing, unexpected = module.load_state_dict(weights, strict=False)
    missing = [k for k in missing if k not in allow_missing]
    if missing or unexpected:
        raise ConversionError(f"{name}: the checkpoint does not match the architecture (missing {missing[:3]}, unexpected {unexpected[:3]}); "
                              "pass the model's original config with --original-config")


def convert(state: dict, out: Path, config: dict | None = None, camera_convention: str = "zero123", ema: bool = True) -> Path:
    """Write the diffusers-layout prior to ``out`` (atomically: a temporary directory renamed at the end)."""
    from diffusers import DDPMScheduler
    from transformers import CLIPImageProcessor

    from lift3d.guidance.view_prior import write_model_index

    config = copy.deepcopy(config or ZERO123_CONFIG)
    state = use_ema(state) if ema else state
    params = config["model"]["params"]
    out = Path(out)
    if out.exists():
        raise ConversionError(f"{out} exists; remove it or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        convert_unet(state, config).save_pretrained(tmp / "unet")
        convert_vae(state, config).save_pretrained(tmp / "vae")
        encoder = convert_image_encoder(state)
        encoder.save_pretrained(tmp / "image_encoder")
        convert_cc_projection(state, camera_convention).save_pretrained(tmp / "cc_projection")
        size = encoder.config.image_size
        CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                           image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)).save_pretrained(tmp / "feature_extractor")
        DDPMScheduler(num_train_timesteps=params.get("timesteps", 1000), beta_start=params["linear_start"], beta_end=params["linear_end"],
                      beta_schedule="scaled_linear", prediction_type="epsilon", clip_sample=False).save_pretrained(tmp / "scheduler")
        write_model_index(tmp, latent=True)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True, help="original checkpoint (.ckpt or .safetensors)")
    ap.add_argument("--out", type=Path, required=True, help="directory to create (diffusers layout)")
    ap.add_argument("--convention", choices=("zero123", "stable-zero123"), default="zero123",
                    help="relative-camera convention the checkpoint was trained with (Stable Zero123: stable-zero123)")
    ap.add_argument("--original-config", type=Path, default=None, help="the model's LDM YAML, if it is not Zero123's architecture")
    ap.add_argument("--no-ema", action="store_true", help="keep the trained weights, not their EMA")
    args = ap.parse_args(argv)
    try:
        config = None
        if args.original_config is not None:
            import yaml

            config = yaml.safe_load(args.original_config.read_text())
        path = convert(load_state_dict(args.ckpt), args.out, config, args.convention, ema=not args.no_ema)
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}; use it with system.guidance.pretrained_model_name_or_path={path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
