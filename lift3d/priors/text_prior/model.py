"""Components of the bundled text-to-image prior, in diffusers / transformers classes.

The prior is a pixel-space (DeepFloyd-IF-style) diffusion model: a small CLIP text encoder,
a word-level tokenizer whose vocabulary is the world's words, and a UNet2DConditionModel with
attention only at 16x16 and 8x8.
"""

from __future__ import annotations

from diffusers import DDPMScheduler, UNet2DConditionModel
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

from lift3d.priors.text_prior.camera import RAYMAP_CHANNELS
from lift3d.priors.world.catalog import COLOURS, KINDS
from lift3d.prompts.view_dependent import VIEW_NAMES

MAX_TOKENS = 10
"""Token sequence length (``a pink snowman , overhead view`` is 6 words)."""
TEXT_WIDTH = 64
"""Width of the text embeddings the UNet attends to."""


def vocabulary() -> list[str]:
    """The tokenizer's words: special tokens first, then every word a caption can use."""
    words = ["[PAD]", "[UNK]", "a", ",", "view", *VIEW_NAMES, *COLOURS, *KINDS]
    return list(dict.fromkeys(words))


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", model_max_length=MAX_TOKENS
    )


def build_text_encoder() -> CLIPTextModel:
    cfg = CLIPTextConfig(
        vocab_size=len(vocabulary()),
        hidden_size=TEXT_WIDTH,
        intermediate_size=4 * TEXT_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=TEXT_WIDTH,
        pad_token_id=0,
        bos_token_id=0,
        eos_token_id=0,
    )
    return CLIPTextModel(cfg)


def build_unet(resolution: int = 32, in_channels: int = 3, camera_conditioned: bool = False) -> UNet2DConditionModel:
    """The bundled priors' UNet (the view prior feeds it 6 channels: noisy target ++ reference).

    ``camera_conditioned``: the UNet also takes the camera's ray map
    (:func:`lift3d.priors.text_prior.camera.camera_raymap`), concatenated after the image channels.
    """
    return UNet2DConditionModel(
        sample_size=resolution,
        in_channels=in_channels + (RAYMAP_CHANNELS if camera_conditioned else 0),
        out_channels=3,
        block_out_channels=(32, 64, 96),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=4,
        norm_num_groups=16,
    )


def build_scheduler(prediction_type: str = "epsilon") -> DDPMScheduler:
    """The text priors' noise schedule; ``bundled:text`` predicts ε, ``bundled:text-camera`` x0 (``sample``)."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type)
