"""``zero123-system``: image-to-3D with a view-conditioned prior (Zero-1-to-3).

Every step has two passes, as threestudio's zero123 system:

* the reference pass renders the input camera and pulls the render to the input image
  (``rgb``: colour, ``mask``: opacity against the foreground; ``normal_smooth``: 2-D smoothness
  of its normal image);
* the novel-view pass renders the random cameras and scores them with the view-conditioned
  prior (``sds``), with the scene regularisers ``orient``, ``sparsity``, ``opaque`` and
  ``3d_normal_smooth`` (normals at surface points of the novel views against normals at
  slightly moved points).

Every weight may be scheduled; a weight of 0 skips its work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from lift3d.config import Scheduled, module_field
from lift3d.data.single_image import ImageConditionedBatch
from lift3d.errors import ConfigError
from lift3d.registry import register
from lift3d.renderers.base import RenderOutput
from lift3d.systems.dreamfusion import DreamFusionSystem
from lift3d.systems.optim import OptimizerConfig


def _default_losses() -> dict:
    return {"lambda_sds": 0.1, "lambda_rgb": 500.0, "lambda_mask": 50.0}


@register("zero123-system")
class Zero123System(DreamFusionSystem):
    """Geometry + material + background, fitted to one image and scored from other views by a view prior."""

    regularizer_names = ("rgb", "mask", "depth", "normal_smooth", "3d_normal_smooth", "orient", "sparsity", "opaque")
    guidance_kind = "lift3d.guidance.base.BaseViewGuidance"

    @dataclass
    class Config:
        geometry_type: str = "implicit-volume"
        """Registered geometry module."""
        geometry: object = module_field("geometry_type", "lift3d.geometry.base.BaseGeometry")
        """Config of the geometry module."""
        material_type: str = "no-material"
        """Registered material module (the input's shading is baked into the colours)."""
        material: object = module_field("material_type", "lift3d.materials.base.BaseMaterial")
        """Config of the material module."""
        background_type: str = "solid-color"
        """Registered background module."""
        background: object = module_field("background_type", "lift3d.backgrounds.base.BaseBackground")
        """Config of the background module."""
        renderer_type: str = "nerf-volume-renderer"
        """Registered renderer module."""
        renderer: object = module_field("renderer_type", "lift3d.renderers.base.BaseRenderer")
        """Config of the renderer module."""
        guidance_type: str = "zero123-guidance"
        """Registered view-conditioned guidance."""
        guidance: object = module_field("guidance_type", "lift3d.guidance.base.BaseViewGuidance")
        """Config of the guidance module."""
        background_from_reference: bool = True
        """Give a ``solid-color`` background the input image's background colour when training starts
        (white for images with alpha), so novel views look like the prior's training pairs."""
        normal_smooth_points: int = 2048
        """Surface points of the novel views at which ``3d_normal_smooth`` compares normals."""
        normal_smooth_perturb: float = 0.01
        """Std of the offset (world units) of the moved points of ``3d_normal_smooth``."""
        loss: dict[str, Scheduled] = field(default_factory=_default_losses)
        """Weight ``lambda_<name>`` of each loss: sds (guidance), rgb, mask, depth (needs
        ``data.depth_path``), normal_smooth, 3d_normal_smooth, orient, sparsity, opaque."""
        optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
        """Optimizer of the geometry, material and background."""
        video_fps: int = 30
        """Frame rate of the test turntable video."""

    def build_guidance(self, cfg) -> None:
        self.guidance = self.build(self.guidance_kind, cfg.guidance_type, cfg.guidance)

    def prepare_run(self, datamodule, resuming: bool) -> None:
        from lift3d.systems.dreamfusion import _ever_positive

        if _ever_positive(self.cfg.loss.get("lambda_depth", 0.0)) and not getattr(datamodule.cfg, "depth_path", None):
            raise ConfigError("system.loss.lambda_depth > 0 needs a depth map of the input: set data.depth_path "
                              "(a .npy array or grayscale PNG), or set system.loss.lambda_depth=0")
        super().prepare_run(datamodule, resuming)

    # ---- the reference ---------------------------------------------------------------------
    def on_fit_start(self) -> None:
        datamodule = self.trainer.datamodule
        if self.cfg.background_from_reference and isinstance(getattr(self.background, "color", None), torch.Tensor):
            with torch.no_grad():
                self.background.color.copy_(datamodule.background.to(self.background.color))
        if self.guidance is not None:  # a method may run without the view prior (Magic123's baseline)
            first = datamodule.train_dataset.sample(self.true_global_step)
            self.guidance.set_reference(first.reference_rgb.to(self.device), first.reference)

    # ---- losses ----------------------------------------------------------------------------
    def reference_losses(self, batch: ImageConditionedBatch) -> dict[str, Tensor]:
        need_normal = self.loss_weight("normal_smooth") > 0
        out = self(batch.reference, need_normal=need_normal)
        mask = batch.reference_mask
        # the input's background pixels take the render's background colour
        target = batch.reference_rgb * mask + out.comp_rgb_bg * (1 - mask)
        losses = {"rgb": F.mse_loss(out.comp_rgb, target), "mask": F.mse_loss(out.opacity, mask)}
        if need_normal:
            losses["normal_smooth"] = normal_image_smoothness(out.comp_normal)
        if batch.reference_depth is not None and self.loss_weight("depth") > 0:
            inside = mask[..., 0] > 0.9  # edge pixels mix the object's depth with the background's
            losses["depth"] = 1 - pearson(out.depth[..., 0][inside], batch.reference_depth[..., 0][inside])
        return losses

    def novel_view_losses(self, batch: ImageConditionedBatch) -> tuple[dict[str, Tensor], dict[str, float], RenderOutput]:
        out = self(batch.random, need_normal=self.loss_weight("orient") > 0)
        losses, info = self.regularizers(out), {}
        if self.loss_weight("sds") > 0:  # 0: the reference-only baseline, no prior
            guidance_out = self.guidance(out.comp_rgb, batch.random)
            losses.update(guidance_out.losses)
            info = guidance_out.info
        if self.loss_weight("3d_normal_smooth") > 0:
            losses["3d_normal_smooth"] = self.surface_normal_smoothness(batch.random, out)
        return losses, info, out

    def surface_normal_smoothness(self, cameras, out: RenderOutput) -> Tensor:
        """Mean squared difference of normals at surface points and at points moved by a little noise."""
        hit = (out.opacity[..., 0] > 0.5).reshape(-1)
        if not hit.any():
            return out.opacity.sum() * 0.0
        depth = (out.depth / out.opacity.clamp(min=1e-6)).reshape(-1, 1)[hit].detach()
        pts = cameras.rays_o.reshape(-1, 3)[hit] + depth * cameras.rays_d.reshape(-1, 3)[hit]
        if pts.shape[0] > self.cfg.normal_smooth_points:
            pts = pts[torch.randperm(pts.shape[0], device=pts.device)[: self.cfg.normal_smooth_points]]
        moved = pts + torch.randn_like(pts) * self.cfg.normal_smooth_perturb
        normals = self.geometry(torch.cat([pts, moved]), with_normal=True).normal
        n, n_moved = normals.chunk(2)
        return (n - n_moved).square().sum(-1).mean()

    def training_step(self, batch: ImageConditionedBatch, batch_idx: int):
        losses = self.reference_losses(batch)
        novel, info, _ = self.novel_view_losses(batch)
        losses.update(novel)
        total = self.weighted_total(losses)
        self.log_train_metrics(info)
        return total


def normal_image_smoothness(normal: Float[Tensor, "B H W 3"]) -> Tensor:
    """Mean squared difference of neighbouring pixels of a normal image, both directions."""
    return (normal[:, 1:] - normal[:, :-1]).square().mean() + (normal[:, :, 1:] - normal[:, :, :-1]).square().mean()


def pearson(a: Float[Tensor, "N"], b: Float[Tensor, "N"]) -> Tensor:
    """Pearson correlation of two samples: 1 when ``a`` is an increasing affine function of ``b``."""
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (a.norm() * b.norm()).clamp(min=1e-8)
