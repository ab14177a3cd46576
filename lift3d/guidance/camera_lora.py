"""A camera-conditioned LoRA of a diffusion UNet: VSD's learned score of the current scene's renders.

LoRA layers are added by **peft** (``UNet2DConditionModel.add_adapter``) to the UNet's attention
projections; a camera MLP maps the flattened camera-to-world matrix to the UNet's time-embedding
width and is added to the time embedding (the UNet's class embedding), as ProlificDreamer does.

Two layouts (``LoRAConfig.unet``):

* ``shared``: the adapter lives in the frozen prior's own UNet and is switched off (and the
  camera embedding removed) for the frozen prior's calls: one UNet in memory;
* ``copy``: the adapter lives in a deep copy of the UNet, which only the LoRA branch calls.

Either way the UNet stays outside the module tree: only the LoRA matrices and the camera MLP
are parameters of this module, so they (and nothing of the prior) are trained, saved in
checkpoints and restored on resume.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field
from collections.abc import Iterator
from typing import Literal

from jaxtyping import Float
from torch import Tensor, nn

from lift3d.errors import ConfigError

ADAPTER = "lift3d_vsd"
"""Name of the peft adapter in the UNet."""


@dataclass
class LoRAConfig:
    """The LoRA model of VSD."""

    rank: int = 4
    """Rank of each LoRA update (ProlificDreamer: 4)."""
    alpha: float = 4.0
    """LoRA scaling numerator: the update is (alpha / rank) * B A."""
    target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    """Names (suffixes) of the UNet's linear layers that get LoRA layers: its attention projections."""
    unet: Literal["shared", "copy"] = "shared"
    """``shared``: the adapter in the prior's UNet, switched off for the frozen prior's calls (one UNet in
    memory); ``copy``: the adapter in a separate copy of the UNet."""
    camera_condition: bool = True
    """Add a camera MLP (flattened camera-to-world matrix) to the LoRA model's time embedding."""


class CameraConditionedLoRA(nn.Module):
    """LoRA layers on a UNet plus a camera MLP; call the LoRA model with :meth:`__call__`."""

    def __init__(self, cfg: LoRAConfig, unet: nn.Module) -> None:
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding
        from peft import LoraConfig
        from peft.tuners.lora import LoraLayer

        self.cfg = cfg
        if cfg.rank < 1:
            raise ConfigError(f"system.guidance.lora.rank: must be at least 1, got {cfg.rank}")
        target = unet if cfg.unet == "shared" else copy.deepcopy(unet)
        target.requires_grad_(False)
        try:
            target.add_adapter(LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=list(cfg.target_modules),
                                          init_lora_weights=True), adapter_name=ADAPTER)
        except ValueError as exc:
            names = sorted({n.rsplit(".", 1)[-1] for n, m in target.named_modules() if isinstance(m, nn.Linear)})
            raise ConfigError(f"system.guidance.lora.target_modules: {cfg.target_modules} match no layer of the prior's UNet; "
                              f"its linear layers end in {names}") from exc
        object.__setattr__(self, "_unet", target)  # not a submodule: the prior's weights are never saved
        layers, self._tuned = {}, []
        for name, module in target.named_modules():
            if isinstance(module, LoraLayer) and ADAPTER in module.lora_A:
                key = name.replace(".", "__")
                layers[f"{key}__A"] = module.lora_A[ADAPTER]
                layers[f"{key}__B"] = module.lora_B[ADAPTER]
                self._tuned.append(module)
        self.layers = nn.ModuleDict(layers)
        """The LoRA matrices (the same modules the UNet calls), keyed by their layer's name."""
        width = target.time_embedding.linear_2.out_features
        self.camera = TimestepEmbedding(16, width) if cfg.camera_condition else None
        if self.camera is not None:  # starts at zero: the LoRA model starts as the prior
            nn.init.zeros_(self.camera.linear_2.weight)
            nn.init.zeros_(self.camera.linear_2.bias)
        if cfg.unet == "shared":
            self._set_enabled(False)

    @property
    def unet(self) -> nn.Module:
        return self._unet

    def _set_enabled(self, enabled: bool) -> None:
        for module in self._tuned:  # the LoRA layers only: the UNet-wide switch walks every module (slow per step)
            module.enable_adapters(enabled)
        for p in self.layers.parameters():  # peft ties requires_grad to the switch; the LoRA always trains
            p.requires_grad_(True)

    @contextmanager
    def _active(self, camera: Tensor | None) -> Iterator[None]:
        unet = self._unet
        if self.camera is not None:
            unet.class_embedding = self.camera
        if self.cfg.unet == "shared":
            self._set_enabled(True)
        try:
            yield
        finally:
            if self.cfg.unet == "shared":
                self._set_enabled(False)
            if self.camera is not None:
                unet.class_embedding = None

    def forward(
        self,
        sample: Float[Tensor, "B C S S"],
        t: Tensor,
        text: Float[Tensor, "B L D"],
        camera: Float[Tensor, "B 16"],
    ) -> Float[Tensor, "B C S S"]:
        """The LoRA model's raw output (its own prediction type) for noisy ``sample`` at timesteps ``t``."""
        unet = self._unet
        dtype = unet.conv_in.weight.dtype  # ``unet.dtype`` walks every parameter: slow per step
        labels = camera.to(dtype) if self.camera is not None else None
        with self._active(camera):
            out = unet(sample.to(dtype), t, encoder_hidden_states=text.to(dtype), class_labels=labels).sample
        out = out.float()
        if out.shape[1] == 2 * sample.shape[1]:  # learned variance (DeepFloyd IF): the prediction half
            out = out[:, : sample.shape[1]]
        return out


def flatten_camera(c2w: Float[Tensor, "B 4 4"]) -> Float[Tensor, "B 16"]:
    """The camera condition: the camera-to-world matrix, row by row."""
    return c2w.reshape(c2w.shape[0], 16)
