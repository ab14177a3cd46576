"""Loading and querying a view-conditioned (Zero-1-to-3 style) prior in diffusers-port layout.

One loader for the bundled pixel prior and for real latent Zero123 checkpoints converted to the
same layout (``vae/`` present): ``unet/``, ``image_encoder/``, ``cc_projection/``,
``scheduler/``, ``model_index.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from lift3d.errors import PriorError
from lift3d.guidance.noise_prediction import check_prediction_type, to_epsilon
from lift3d.guidance.traced_unet import TracedDenoiser
from lift3d.priors.view_prior.model import CCProjection, clip_normalize

REQUIRED = ("unet", "image_encoder", "cc_projection", "scheduler")


@dataclass
class ViewPrior(TracedDenoiser):
    """The frozen networks of a view-conditioned prior."""

    unet: torch.nn.Module
    image_encoder: torch.nn.Module
    cc_projection: CCProjection
    scheduler_config: dict
    alphas_cumprod: Tensor
    vae: torch.nn.Module | None = None
    path: Path | None = None

    def to(self, device: torch.device) -> "ViewPrior":
        """Move every network to ``device`` (the UNet channels-last on a CPU)."""
        self.place_unet(device)
        for m in (self.image_encoder, self.cc_projection, self.vae):
            if m is not None:
                m.to(device)
        self.alphas_cumprod = self.alphas_cumprod.to(device)
        return self

    @property
    def is_latent(self) -> bool:
        return self.vae is not None

    @property
    def prediction_type(self) -> str:
        return self.scheduler_config.get("prediction_type", "epsilon")

    @property
    def unconditional_keeps_reference(self) -> bool:
        """Whether the unconditional branch keeps the concatenated reference (context-only dropout)."""
        return bool(getattr(self.cc_projection.config, "unconditional_keeps_reference", False))

    @property
    def image_size(self) -> int:
        size = int(self.unet.config.sample_size)
        if self.vae is None:
            return size
        return size * 2 ** (len(self.vae.config.block_out_channels) - 1)

    def encode_reference(self, reference: Float[Tensor, "B 3 H W"]) -> Tensor:
        """What the UNet concatenates: the reference in [-1, 1] at the prior's image size, or its
        VAE latent (mode, unscaled, as Zero123 concatenates it)."""
        size = self.image_size
        if reference.shape[-1] != size or reference.shape[-2] != size:
            reference = F.interpolate(reference, (size, size), mode="bilinear", align_corners=False, antialias=reference.shape[-1] > size)
        x = reference * 2 - 1
        if self.vae is None:
            return x
        return self.vae.encode(x).latent_dist.mode()

    @property
    def camera_convention(self) -> str:
        """How the relative camera is written (:mod:`lift3d.guidance.relative_camera`)."""
        return str(getattr(self.cc_projection.config, "camera_convention", "lift3d"))

    def image_embedding(self, reference: Float[Tensor, "B 3 H W"]) -> Float[Tensor, "B E"]:
        """The image encoder's embedding of reference views in [0, 1], resized to its input size."""
        size = int(self.image_encoder.config.image_size)
        x = reference
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, (size, size), mode="bicubic", align_corners=False, antialias=x.shape[-1] > size).clamp(0, 1)
        return self.image_encoder(pixel_values=clip_normalize(x)).image_embeds

    def context(self, embedding: Float[Tensor, "B E"], camera: Float[Tensor, "B 4"]) -> Float[Tensor, "B 1 D"]:
        """The UNet's one-token context: image embedding joined with the relative camera."""
        return self.cc_projection(torch.cat([embedding, camera.to(embedding.dtype)], dim=-1))[:, None, :]

    def conditioning(
        self, reference: Float[Tensor, "B 3 H W"], camera: Float[Tensor, "B 4"]
    ) -> tuple[Tensor, Tensor]:
        """(context, concatenated image) of the conditional branch; zeros give the unconditional one."""
        return self.context(self.image_embedding(reference), camera), self.encode_reference(reference)

    def predict_noise(
        self,
        x_t: Float[Tensor, "B C h w"],
        t: Int[Tensor, "B"],
        context: Float[Tensor, "B 1 D"],
        concat: Float[Tensor, "B C h w"],
        guidance_scale: float,
    ) -> Float[Tensor, "B C h w"]:
        """Classifier-free-guided ε of noisy targets (one batched UNet call, cond + uncond).

        The unconditional branch zeroes the context, and the concatenated reference unless the
        prior was trained to keep it (:attr:`unconditional_keeps_reference`).
        """
        if guidance_scale == 1.0:  # the unconditional branch cancels: one conditional call
            return self.conditional_noise(x_t, t, context, concat)
        uncond_concat = concat if self.unconditional_keeps_reference else torch.zeros_like(concat)
        sample = torch.cat([torch.cat([x_t, concat], 1), torch.cat([x_t, uncond_concat], 1)])
        ctx = torch.cat([context, torch.zeros_like(context)])
        out = self.denoise(sample, torch.cat([t, t]), ctx)
        a = self.alphas_cumprod.to(out.device)[torch.cat([t, t])].view(-1, 1, 1, 1)
        eps = to_epsilon(out, torch.cat([x_t, x_t]), a, self.prediction_type)
        cond, uncond = eps.chunk(2)
        return uncond + guidance_scale * (cond - uncond)

    def conditional_noise(
        self, x_t: Float[Tensor, "B C h w"], t: Int[Tensor, "B"], context: Float[Tensor, "B 1 D"], concat: Float[Tensor, "B C h w"]
    ) -> Float[Tensor, "B C h w"]:
        """ε of the conditional branch alone."""
        out = self.denoise(torch.cat([x_t, concat], 1), t, context)
        a = self.alphas_cumprod.to(out.device)[t].view(-1, 1, 1, 1)
        return to_epsilon(out, x_t, a, self.prediction_type)

    @torch.no_grad()
    def sample(
        self,
        reference: Float[Tensor, "B 3 H W"],
        camera: Float[Tensor, "B 4"],
        steps: int = 50,
        guidance_scale: float = 3.0,
        generator: torch.Generator | None = None,
    ) -> Float[Tensor, "B 3 H W"]:
        """Novel views in [0, 1] by DDIM."""
        from diffusers import DDIMScheduler

        sched = DDIMScheduler.from_config({**self.scheduler_config, "prediction_type": "epsilon"})  # predict_noise gives ε
        sched.set_timesteps(steps)
        context, concat = self.conditioning(reference, camera)
        size = int(self.unet.config.sample_size)
        x = torch.randn(reference.shape[0], self.unet.config.out_channels, size, size, generator=generator)
        for t in sched.timesteps:
            eps = self.predict_noise(x, t.expand(x.shape[0]), context, concat, guidance_scale)
            x = sched.step(eps, t, x).prev_sample
        if self.vae is not None:
            x = self.vae.decode(x / self.vae.config.scaling_factor).sample
        return ((x.clamp(-1, 1) + 1) / 2).cpu()

    def eval(self) -> "ViewPrior":
        for m in (self.unet, self.image_encoder, self.cc_projection, self.vae):
            if m is not None:
                m.eval()
                m.requires_grad_(False)
        return self


def load_view_prior(path: Path) -> ViewPrior:
    """Load a view-conditioned prior from a directory; :class:`PriorError` says what is missing."""
    import diffusers
    from diffusers import DDPMScheduler
    from transformers import CLIPVisionModelWithProjection

    path = Path(path)
    missing = [name for name in REQUIRED if not (path / name).is_dir()]
    if not (path / "model_index.json").is_file() or missing:
        what = ", ".join([*(["model_index.json"] if not (path / "model_index.json").is_file() else []), *(f"{m}/" for m in missing)])
        raise PriorError(f"{path} is not a view-conditioned prior (missing {what}); point at a Zero123 pipeline in diffusers layout, or bundled:view")
    try:
        unet = diffusers.UNet2DConditionModel.from_pretrained(path, subfolder="unet")
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(path / "image_encoder")
        cc_projection = CCProjection.from_pretrained(path, subfolder="cc_projection")
        scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
        vae = diffusers.AutoencoderKL.from_pretrained(path, subfolder="vae") if (path / "vae").is_dir() else None
    except (OSError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[0]
        raise PriorError(f"cannot load the view prior at {path}: {msg}; check that it is a complete diffusers-layout directory") from exc
    check_prediction_type(scheduler.config.get("prediction_type", "epsilon"), str(path))
    return ViewPrior(
        unet=unet,
        image_encoder=image_encoder,
        cc_projection=cc_projection,
        scheduler_config=dict(scheduler.config),
        alphas_cumprod=scheduler.alphas_cumprod.clone().float(),
        vae=vae,
        path=path,
    ).eval()


def write_model_index(path: Path, latent: bool) -> None:
    """``model_index.json`` of a view prior written by lift3d."""
    import diffusers

    index = {
        "_class_name": "Zero1to3StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "unet": ["diffusers", "UNet2DConditionModel"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "cc_projection": ["lift3d.priors.view_prior.model", "CCProjection"],
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "scheduler": ["diffusers", "DDPMScheduler"],
    }
    if latent:
        index["vae"] = ["diffusers", "AutoencoderKL"]
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
