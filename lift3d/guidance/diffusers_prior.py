"""Loading the frozen parts of a diffusers-layout prior (UNet, scheduler, optional VAE)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lift3d.errors import PriorError
from lift3d.guidance.noise_prediction import check_prediction_type
from lift3d.guidance.traced_unet import TracedDenoiser


@dataclass
class FrozenPrior(TracedDenoiser):
    """The frozen networks of a prior; kept outside ``nn.Module`` so checkpoints never hold them."""

    unet: torch.nn.Module
    alphas_cumprod: torch.Tensor
    num_train_timesteps: int
    vae: torch.nn.Module | None
    path: Path
    prediction_type: str = "epsilon"
    """What the UNet predicts (scheduler config): ``epsilon``, ``v_prediction`` or ``sample``."""
    dtype: torch.dtype = torch.float32
    """The networks' dtype (set by :meth:`to`; diffusers' ``unet.dtype`` walks every module per call)."""

    @property
    def is_latent(self) -> bool:
        return self.vae is not None

    @property
    def in_channels(self) -> int:
        return self.unet.config.in_channels

    @property
    def sample_size(self) -> int:
        return int(self.unet.config.sample_size)

    @property
    def image_size(self) -> int:
        """Size of the RGB image the prior sees (latent size times the VAE's downsampling)."""
        if self.vae is None:
            return self.sample_size
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return self.sample_size * factor

    def to(self, device: torch.device, dtype: torch.dtype = torch.float32) -> "FrozenPrior":
        if next(self.unet.parameters()).dtype != dtype:  # a dtype argument makes diffusers warn, even a no-op one
            self.unet.to(dtype=dtype)
        self.place_unet(device)
        if self.vae is not None:
            self.vae.to(device, dtype)
        self.alphas_cumprod = self.alphas_cumprod.to(device)
        self.dtype = dtype
        return self


def load_frozen_prior(path: Path, unet_class: str = "UNet2DConditionModel") -> FrozenPrior:
    import diffusers
    from diffusers import DDPMScheduler

    try:
        unet = getattr(diffusers, unet_class).from_pretrained(path, subfolder="unet")
        scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
        vae = None
        if (path / "vae").is_dir():
            vae = diffusers.AutoencoderKL.from_pretrained(path, subfolder="vae")
    except (OSError, ValueError, EnvironmentError) as exc:
        msg = str(exc).strip().splitlines()[0]
        raise PriorError(f"cannot load the prior at {path}: {msg}; check that it is a complete diffusers-layout directory") from exc
    for module in (unet, vae):
        if module is not None:
            module.eval()
            module.requires_grad_(False)
    return FrozenPrior(
        unet=unet,
        alphas_cumprod=scheduler.alphas_cumprod.clone().float(),
        num_train_timesteps=scheduler.config.num_train_timesteps,
        vae=vae,
        path=path,
        prediction_type=check_prediction_type(scheduler.config.get("prediction_type", "epsilon"), str(path)),
    )
