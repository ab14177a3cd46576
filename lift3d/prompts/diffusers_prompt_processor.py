"""``diffusers-prompt-processor``: text embeddings from the prior's own tokenizer and text encoder.

Works for CLIP (Stable Diffusion, the bundled prior) and T5 (DeepFloyd IF) text encoders; the
class is read from the prior's ``model_index.json``. Embeddings are cached on disk, keyed by
the prior's directory, the size and modification time of its text-encoder and tokenizer files
(so retrained weights at the same path are not served stale embeddings), how embeddings are
made (:data:`EMBEDDING_FORMAT`, the encoder class, the padded length, whether an attention mask
is used) and the exact text, so a rerun does not load the text encoder again.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from lift3d.errors import PriorError
from lift3d.guidance.prior_path import read_model_index, resolve_prior_path
from lift3d.prompts.base import BasePromptProcessor, PromptEmbeddings
from lift3d.prompts.view_dependent import VIEW_NAMES, VIEW_SUFFIXES, ViewThresholds
from lift3d.registry import register


EMBEDDING_FORMAT = 2
"""Version of how embeddings are computed and stored; bump it when that changes, so caches refresh."""


def default_cache_dir() -> Path:
    root = os.environ.get("LIFT3D_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "lift3d")
    return Path(root) / "text_embeddings"


@register("diffusers-prompt-processor")
class DiffusersPromptProcessor(BasePromptProcessor):
    @dataclass
    class Config:
        prompt: str = "a red house"
        """The text to lift to 3D."""
        negative_prompt: str = ""
        """Text for the unconditional branch of classifier-free guidance."""
        pretrained_model_name_or_path: str = "bundled:text"
        """Prior whose tokenizer and text encoder embed the prompt (usually the guidance's prior)."""
        use_view_dependent_prompt: bool = True
        """Append ', front view' / ', side view' / ', back view' / ', overhead view' by camera."""
        front_threshold: float = 45.0
        """|azimuth| (degrees) below which a camera sees the front."""
        back_threshold: float = 45.0
        """|azimuth| above 180 minus this is the back."""
        overhead_threshold: float = 60.0
        """Elevation (degrees) above which a view is overhead."""
        use_cache: bool = True
        """Cache embeddings on disk (``$LIFT3D_CACHE_DIR`` or ``~/.cache/lift3d``)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        if not cfg.prompt.strip():
            raise PriorError("the prompt is empty; set system.prompt_processor.prompt=\"a red house\"")
        self.prior_path = resolve_prior_path(cfg.pretrained_model_name_or_path)
        self._fingerprint = self._text_encoder_fingerprint() + "\n" + self._recipe()
        texts = [cfg.prompt, cfg.negative_prompt] + [cfg.prompt + VIEW_SUFFIXES[v] for v in VIEW_NAMES]
        embs = self._embed_with_cache(texts)
        self.embeddings = PromptEmbeddings(
            cond=embs[0],
            uncond=embs[1],
            views=torch.stack(embs[2:]),
            thresholds=ViewThresholds(cfg.front_threshold, cfg.back_threshold, cfg.overhead_threshold),
            view_dependent=cfg.use_view_dependent_prompt,
        )

    def _text_encoder_fingerprint(self) -> str:
        """Name, size and mtime of every text-encoder and tokenizer file: changes when they are replaced."""
        files = sorted(p for sub in ("text_encoder", "tokenizer") for p in (self.prior_path / sub).rglob("*") if p.is_file())
        return ";".join(f"{p.relative_to(self.prior_path)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)

    def _encoder_class(self) -> str:
        return read_model_index(self.prior_path).get("text_encoder", [None, "CLIPTextModel"])[1]

    def _max_length(self) -> int:
        """The padded token length: the tokenizer's ``model_max_length`` (at most 512)."""
        import json

        cfg_file = self.prior_path / "tokenizer" / "tokenizer_config.json"
        try:
            declared = json.loads(cfg_file.read_text()).get("model_max_length", 512)
        except (OSError, ValueError):
            declared = 512
        return int(min(declared, 512))

    def _uses_attention_mask(self) -> bool:
        return "CLIP" not in self._encoder_class()  # Stable Diffusion convention: CLIP sees no mask

    def _recipe(self) -> str:
        """How embeddings are made; part of the cache key."""
        return (f"format={EMBEDDING_FORMAT};encoder={self._encoder_class()};max_length={self._max_length()};"
                f"attention_mask={self._uses_attention_mask()}")

    def _cache_file(self, text: str) -> Path:
        key = hashlib.sha256(f"{self.prior_path}\n{self._fingerprint}\n{text}".encode()).hexdigest()[:32]
        return default_cache_dir() / f"{key}.safetensors"

    def _embed_with_cache(self, texts: list[str]) -> list[torch.Tensor]:
        from safetensors.torch import load_file, save_file

        from lift3d.utils.io import atomic_path

        out: dict[int, torch.Tensor] = {}
        if self.cfg.use_cache:
            for i, t in enumerate(texts):
                f = self._cache_file(t)
                if f.is_file():
                    out[i] = load_file(f)["embedding"]
        missing = [i for i in range(len(texts)) if i not in out]
        if missing:
            fresh = self._embed([texts[i] for i in missing])
            for i, e in zip(missing, fresh):
                out[i] = e
                if self.cfg.use_cache:
                    with atomic_path(self._cache_file(texts[i])) as tmp:
                        save_file({"embedding": e.contiguous()}, str(tmp), metadata={"text": texts[i], "prior": str(self.prior_path)})
        return [out[i] for i in range(len(texts))]

    def _embed(self, texts: list[str]) -> list[torch.Tensor]:
        import transformers
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.prior_path / "tokenizer")
        check_words_known(tokenizer, [self.cfg.prompt, self.cfg.negative_prompt], str(self.prior_path))
        cls_name = self._encoder_class()
        encoder_cls = getattr(transformers, cls_name, None)
        if encoder_cls is None:
            raise PriorError(f"prior's text encoder class {cls_name!r} is not in transformers {transformers.__version__}; upgrade transformers")
        encoder = encoder_cls.from_pretrained(self.prior_path / "text_encoder")
        encoder.eval()
        tok = tokenizer(texts, padding="max_length", max_length=self._max_length(), truncation=True, return_tensors="pt")
        with torch.no_grad():
            if self._uses_attention_mask():
                hidden = encoder(tok.input_ids, attention_mask=tok.attention_mask)[0]
            else:
                hidden = encoder(tok.input_ids)[0]
        return [h.float() for h in hidden]


def check_words_known(tokenizer, texts: list[str], prior: str) -> None:
    """Raise when a word of ``texts`` maps to the tokenizer's unknown token."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return
    unknown = []
    for text in texts:
        for word in re.findall(r"[\w']+|[^\w\s]", text):
            ids = tokenizer(word, add_special_tokens=False).input_ids
            if unk in ids and word not in unknown:
                unknown.append(word)
    if unknown:
        vocab = getattr(tokenizer, "get_vocab", lambda: {})()
        hint = ""
        if 0 < len(vocab) <= 200:
            words = sorted(w for w in vocab if w.isalpha())
            hint = f"; it knows: {', '.join(words)}"
        raise PriorError(f"the prior at {prior} cannot read the word(s) {', '.join(repr(w) for w in unknown)} (unknown token){hint}")
