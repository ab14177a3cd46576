"""extern/zero123_convert.py: a tiny LDM-layout Zero123 checkpoint converts to the diffusers layout
and gives the same outputs as the model it was built from.

The checkpoint is built here from tiny random diffusers/transformers models, renamed to the
original LDM / OpenAI-CLIP key names by the inverse mapping below (written independently of
the converter, from the LDM and CLIP module layouts).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from extern.zero123_convert import ConversionError, convert
from lift3d.guidance.view_prior import load_view_prior
from lift3d.priors.view_prior.model import CCProjection
from run_helpers import ROOT

LPB = 1  # resnets per block
TINY_CONFIG = {
    "model": {"params": {
        "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000, "scale_factor": 0.18215,
        "unet_config": {"params": {
            "image_size": 8, "in_channels": 8, "out_channels": 4, "model_channels": 32, "attention_resolutions": [1],
            "num_res_blocks": LPB, "channel_mult": [1, 2], "num_heads": 2, "use_spatial_transformer": True,
            "transformer_depth": 1, "context_dim": 16, "legacy": False,
        }},
        "first_stage_config": {"params": {"embed_dim": 4, "ddconfig": {
            "double_z": True, "z_channels": 4, "resolution": 16, "in_channels": 3, "out_ch": 3, "ch": 32, "ch_mult": [1, 2],
            "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
        }}},
    }}
}
RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
          "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def tiny_models():
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    # LDM's group norms have 32 groups: every width is a multiple of 32
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=8, out_channels=4, block_out_channels=(32, 64), layers_per_block=LPB,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2,
    )
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(32, 64), latent_channels=4, sample_size=16, layers_per_block=1)
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(image_size=16, patch_size=4, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                          num_attention_heads=1, projection_dim=16, hidden_act="quick_gelu"))
    proj = CCProjection(in_channel=20, out_channel=16)
    for m in (unet, vae, clip, proj):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.05)  # no zero-initialised layer may hide a wrong mapping
        m.eval()
    return unet, vae, clip, proj


def _copy(sd: dict, src: str, dst: str, out: dict, rename: dict | None = None) -> None:
    for k, v in sd.items():
        if k.startswith(src + "."):
            rest = k[len(src) + 1:]
            if rename:
                head, _, tail = rest.partition(".")
                rest = f"{rename.get(head, head)}.{tail}"
            out[dst + "." + rest] = v


def unet_to_ldm(unet) -> dict:
    sd, out = unet.state_dict(), {}
    _copy(sd, "time_embedding.linear_1", "time_embed.0", out)
    _copy(sd, "time_embedding.linear_2", "time_embed.2", out)
    _copy(sd, "conv_in", "input_blocks.0.0", out)
    _copy(sd, "conv_norm_out", "out.0", out)
    _copy(sd, "conv_out", "out.2", out)
    n = len(unet.down_blocks)
    for i in range(n):
        for j in range(LPB):
            layer = 1 + i * (LPB + 1) + j
            _copy(sd, f"down_blocks.{i}.resnets.{j}", f"input_blocks.{layer}.0", out, RESNET)
            _copy(sd, f"down_blocks.{i}.attentions.{j}", f"input_blocks.{layer}.1", out)
        if i < n - 1:
            _copy(sd, f"down_blocks.{i}.downsamplers.0.conv", f"input_blocks.{(i + 1) * (LPB + 1)}.0.op", out)
    _copy(sd, "mid_block.resnets.0", "middle_block.0", out, RESNET)
    _copy(sd, "mid_block.attentions.0", "middle_block.1", out)
    _copy(sd, "mid_block.resnets.1", "middle_block.2", out, RESNET)
    for i, block in enumerate(unet.up_blocks):
        has_attn = hasattr(block, "attentions")
        for j in range(LPB + 1):
            _copy(sd, f"up_blocks.{i}.resnets.{j}", f"output_blocks.{i * (LPB + 1) + j}.0", out, RESNET)
            if has_attn:
                _copy(sd, f"up_blocks.{i}.attentions.{j}", f"output_blocks.{i * (LPB + 1) + j}.1", out)
        if block.upsamplers is not None:
            _copy(sd, f"up_blocks.{i}.upsamplers.0.conv", f"output_blocks.{i * (LPB + 1) + LPB}.{2 if has_attn else 1}.conv", out)
    return {"model.diffusion_model." + k: v for k, v in out.items()}


def vae_to_ldm(vae) -> dict:
    sd, out = vae.state_dict(), {}
    vres = {"conv_shortcut": "nin_shortcut"}
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
    for part in ("encoder", "decoder"):
        _copy(sd, f"{part}.conv_in", f"{part}.conv_in", out)
        _copy(sd, f"{part}.conv_out", f"{part}.conv_out", out)
        _copy(sd, f"{part}.conv_norm_out", f"{part}.norm_out", out)
        _copy(sd, f"{part}.mid_block.resnets.0", f"{part}.mid.block_1", out, vres)
        _copy(sd, f"{part}.mid_block.resnets.1", f"{part}.mid.block_2", out, vres)
        for k, v in sd.items():
            prefix = f"{part}.mid_block.attentions.0."
            if k.startswith(prefix):
                name, _, p = k[len(prefix):].partition(".")
                p = p.removeprefix("0.")  # to_out.0.weight
                out[f"{part}.mid.attn_1.{attn[name]}.{p}"] = v[:, :, None, None] if v.ndim == 2 else v
    n = len(vae.encoder.down_blocks)
    for i in range(n):
        _copy(sd, f"encoder.down_blocks.{i}.resnets.0", f"encoder.down.{i}.block.0", out, vres)
        _copy(sd, f"encoder.down_blocks.{i}.downsamplers.0.conv", f"encoder.down.{i}.downsample.conv", out)
        for j in range(2):
            _copy(sd, f"decoder.up_blocks.{i}.resnets.{j}", f"decoder.up.{n - 1 - i}.block.{j}", out, vres)
        _copy(sd, f"decoder.up_blocks.{i}.upsamplers.0.conv", f"decoder.up.{n - 1 - i}.upsample.conv", out)
    _copy(sd, "quant_conv", "quant_conv", out)
    _copy(sd, "post_quant_conv", "post_quant_conv", out)
    return {"first_stage_model." + k: v for k, v in out.items()}


def clip_to_openai(clip) -> dict:
    sd, out = clip.state_dict(), {}
    out["class_embedding"] = sd["vision_model.embeddings.class_embedding"]
    out["conv1.weight"] = sd["vision_model.embeddings.patch_embedding.weight"]
    out["positional_embedding"] = sd["vision_model.embeddings.position_embedding.weight"]
    out["proj"] = sd["visual_projection.weight"].t()
    for p in ("weight", "bias"):
        out[f"ln_pre.{p}"] = sd[f"vision_model.pre_layrnorm.{p}"]
        out[f"ln_post.{p}"] = sd[f"vision_model.post_layernorm.{p}"]
        for i in range(clip.config.num_hidden_layers):
            s, d = f"vision_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
            out[d + f"attn.in_proj_{p}"] = torch.cat([sd[s + f"self_attn.{x}_proj.{p}"] for x in "qkv"])
            out[d + f"attn.out_proj.{p}"] = sd[s + f"self_attn.out_proj.{p}"]
            out[d + f"ln_1.{p}"], out[d + f"ln_2.{p}"] = sd[s + f"layer_norm1.{p}"], sd[s + f"layer_norm2.{p}"]
            out[d + f"mlp.c_fc.{p}"], out[d + f"mlp.c_proj.{p}"] = sd[s + f"mlp.fc1.{p}"], sd[s + f"mlp.fc2.{p}"]
    return {"cond_stage_model.model.visual." + k: v for k, v in out.items()}


def ldm_checkpoint(unet, vae, clip, proj) -> dict:
    state = {**unet_to_ldm(unet), **vae_to_ldm(vae), **clip_to_openai(clip)}
    state["cc_projection.weight"], state["cc_projection.bias"] = proj.projection.weight, proj.projection.bias
    return {k: v.detach().clone() for k, v in state.items()}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    models = tiny_models()
    path = tmp_path_factory.mktemp("ckpt") / "tiny-zero123.ckpt"
    torch.save({"state_dict": ldm_checkpoint(*models), "global_step": 1}, path)
    return models, path


def test_converted_checkpoint_gives_the_outputs_of_the_model_it_was_built_from(converted, tmp_path):
    (unet, vae, clip, proj), ckpt = converted
    import yaml

    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(TINY_CONFIG))
    out = tmp_path / "tiny-zero123-diffusers"
    proc = subprocess.run([sys.executable, "-m", "extern.zero123_convert", "--ckpt", str(ckpt), "--out", str(out),
                           "--original-config", str(cfg), "--convention", "stable-zero123"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    prior = load_view_prior(out)
    assert prior.is_latent and prior.camera_convention == "stable-zero123" and prior.prediction_type == "epsilon"
    assert prior.unet.config.in_channels == 8 and not prior.unconditional_keeps_reference
    torch.manual_seed(1)
    x, t, ctx = torch.randn(2, 8, 8, 8), torch.tensor([10, 900]), torch.randn(2, 1, 16)
    image = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(prior.unet(x, t, encoder_hidden_states=ctx).sample, unet(x, t, encoder_hidden_states=ctx).sample)
        torch.testing.assert_close(prior.vae.encode(image).latent_dist.mean, vae.encode(image).latent_dist.mean)
        torch.testing.assert_close(prior.vae.decode(x[:, :4]).sample, vae.decode(x[:, :4]).sample)
        torch.testing.assert_close(prior.image_encoder(pixel_values=image).image_embeds, clip(pixel_values=image).image_embeds)
        cam = torch.randn(2, 36)
        torch.testing.assert_close(prior.cc_projection(cam[:, :20]), proj(cam[:, :20]))
    assert prior.vae.config.scaling_factor == pytest.approx(0.18215)
    assert not list(tmp_path.glob(".tiny-zero123-diffusers.*"))  # no temporary directory left behind


def test_conversion_prefers_the_ema_weights(converted, tmp_path):
    (unet, vae, clip, proj), _ = converted
    state = ldm_checkpoint(unet, vae, clip, proj)
    key = "model.diffusion_model.out.2.bias"
    state["model_ema.diffusion_modelout2bias"] = state[key] + 1.0
    state.update({f"model_ema.pad{i}": torch.zeros(1) for i in range(3)})
    prior = load_view_prior(convert(state, tmp_path / "ema", TINY_CONFIG))
    torch.testing.assert_close(prior.unet.conv_out.bias, state[key] + 1.0)
    plain = load_view_prior(convert(state, tmp_path / "plain", TINY_CONFIG, ema=False))
    torch.testing.assert_close(plain.unet.conv_out.bias, state[key])


def test_a_plain_stable_diffusion_checkpoint_is_a_clear_error(converted, tmp_path):
    (unet, vae, clip, proj), _ = converted
    state = {k: v for k, v in ldm_checkpoint(unet, vae, clip, proj).items() if not k.startswith("cc_projection")}
    with pytest.raises(ConversionError, match="no cc_projection"):
        convert(state, tmp_path / "out", TINY_CONFIG)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
