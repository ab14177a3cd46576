"""Tiny random-weight priors in diffusers layout, built and saved the way a user's prior is."""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = ["a", "red", "blue", "cube", "house", "sphere", ",", "front", "side", "back", "overhead", "view"]


def word_tokenizer(max_length: int = 16):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", model_max_length=max_length)


def _index(path: Path, entries: dict) -> None:
    import diffusers

    (path / "model_index.json").write_text(json.dumps({"_class_name": "TestPipeline", "_diffusers_version": diffusers.__version__, **entries}))


def build_latent_prior(path: Path, seed: int = 0) -> Path:
    """Stable-Diffusion-like: CLIP text encoder, VAE (factor 2), latent UNet at 8x8, PNDM scheduler config."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 8), latent_channels=4,
        norm_num_groups=4, sample_size=16, layers_per_block=1,
    )
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(WORDS) + 2, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=16, pad_token_id=0,
                                        bos_token_id=0, eos_token_id=0))
    path.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(path / "unet")
    vae.save_pretrained(path / "vae")
    text.save_pretrained(path / "text_encoder")
    word_tokenizer().save_pretrained(path / "tokenizer")
    PNDMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).save_pretrained(path / "scheduler")
    _index(path, {"unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
                  "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
                  "scheduler": ["diffusers", "PNDMScheduler"]})
    return path


def build_pixel_prior(path: Path, seed: int = 0, resolution: int = 16, camera_conditioned: bool = False) -> Path:
    """DeepFloyd-IF-like: T5 text encoder, no VAE, pixel UNet with learned variance (6 output channels).

    ``camera_conditioned``: the UNet also takes the camera's ray map after the image (3 + 6 input
    channels), and ``model_index.json`` says so, as ``bundled:text-camera`` does."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    from lift3d.priors.text_prior.camera import MARKER_KEY, RAYMAP_CHANNELS

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=resolution, in_channels=3 + (RAYMAP_CHANNELS if camera_conditioned else 0), out_channels=6, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4,
    )
    text = T5EncoderModel(T5Config(vocab_size=len(WORDS) + 2, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, pad_token_id=0))
    path.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(path / "unet")
    text.save_pretrained(path / "text_encoder")
    word_tokenizer().save_pretrained(path / "tokenizer")
    DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="learned_range").save_pretrained(path / "scheduler")
    _index(path, {"unet": ["diffusers", "UNet2DConditionModel"], "text_encoder": ["transformers", "T5EncoderModel"],
                  "tokenizer": ["transformers", "PreTrainedTokenizerFast"], "scheduler": ["diffusers", "DDPMScheduler"],
                  **({MARKER_KEY: "raymap"} if camera_conditioned else {})})
    return path


def build_latent_view_prior(path: Path, camera_convention: str = "lift3d") -> Path:
    """A tiny random Zero123-like prior: VAE latents, 8-channel UNet input, CLIP image encoder, cc_projection."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from lift3d.guidance.view_prior import write_model_index
    from lift3d.priors.view_prior.model import CCProjection

    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=8, in_channels=8, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4,
    ).save_pretrained(path / "unet")
    AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 8), latent_channels=4,
        norm_num_groups=4, sample_size=16, layers_per_block=1,
    ).save_pretrained(path / "vae")
    CLIPVisionModelWithProjection(CLIPVisionConfig(image_size=16, patch_size=4, hidden_size=16, intermediate_size=32,
                                                   num_hidden_layers=1, num_attention_heads=2, projection_dim=16)).save_pretrained(path / "image_encoder")
    CCProjection(in_channel=20, out_channel=16, camera_convention=camera_convention).save_pretrained(path / "cc_projection")
    DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).save_pretrained(path / "scheduler")
    write_model_index(path, latent=True)
    return path
