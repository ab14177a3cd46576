"""CLIP score of rendered frames against a prompt, with a CLIP model from a local directory.

``clip_score = 100 * mean over frames of max(0, cos(image embedding, text embedding))`` (the
definition of Hessel et al. and torchmetrics). The directory holds a transformers ``CLIPModel``
with its tokenizer and image-processor config (``save_pretrained`` layout); nothing is downloaded.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from lift3d.errors import ConfigError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@lru_cache(maxsize=2)
def _load(path: str):
    from transformers import AutoTokenizer, CLIPModel

    directory = Path(path)
    if not (directory / "config.json").is_file():
        raise ConfigError(f"CLIP model directory {path!r} has no config.json; pass a local CLIPModel folder (save_pretrained layout)")
    model = CLIPModel.from_pretrained(directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    mean, std = CLIP_MEAN, CLIP_STD
    pre = directory / "preprocessor_config.json"
    if pre.is_file():
        import json

        cfg = json.loads(pre.read_text())
        mean, std = tuple(cfg.get("image_mean", mean)), tuple(cfg.get("image_std", std))
    return model, tokenizer, torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]


def _embedding(out) -> Tensor:
    """Projected embedding from ``get_*_features``: a tensor (transformers 4) or an output whose pooler_output it is (5)."""
    return out if isinstance(out, Tensor) else out.pooler_output


@torch.no_grad()
def clip_score(frames: Float[Tensor, "N 3 H W"], prompt: str, model_dir: str | Path) -> float:
    """CLIP score (0-100) of frames in [0, 1] against ``prompt``."""
    model, tokenizer, mean, std = _load(str(model_dir))
    size = model.config.vision_config.image_size
    images = F.interpolate(frames, (size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    image_emb = F.normalize(_embedding(model.get_image_features(pixel_values=(images - mean) / std)), dim=-1)
    tokens = tokenizer([prompt], padding=True, return_tensors="pt")
    text_emb = F.normalize(_embedding(model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens.get("attention_mask"))), dim=-1)
    return float(100 * (image_emb @ text_emb.T).clamp(min=0).mean())
