"""``dreamfusion-system``: text-to-3D by Score Distillation Sampling (DreamFusion)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lift3d.config import Scheduled, module_field
from lift3d.data.batch import CameraBatch
from lift3d.geometry.base import BaseExplicitGeometry, BaseGeometry
from lift3d.renderers.base import BaseRenderer, RenderOutput
from lift3d.errors import ConfigError
from lift3d.materials.base import BaseMaterial
from lift3d.registry import find, register
from lift3d.systems.base import BaseLift3DSystem
from lift3d.systems.prior_background import prior_background_errors
from lift3d.systems.optim import OptimizerConfig, build_lr_schedule, build_optimizer, param_lr_errors
from lift3d.utils.images import side_by_side, write_video
from lift3d.utils.io import write_png
from lift3d.utils.timing import RUN_PHASES


def _ever_positive(weight) -> bool:
    """Whether a (possibly scheduled) loss weight is above zero at some step."""
    if isinstance(weight, (int, float)):
        return weight > 0
    return any(v > 0 for _, v in weight)


def _default_losses() -> dict:
    return {"lambda_sds": 1.0, "lambda_orient": 0.0, "lambda_sparsity": 0.0, "lambda_opaque": 0.0, "lambda_emptiness": 0.0,
            "lambda_center_depth": 0.0}


@register("dreamfusion-system")
class DreamFusionSystem(BaseLift3DSystem):
    """Geometry + material + background, rendered by a renderer, scored by a guidance against a prompt."""

    regularizer_names = ("orient", "sparsity", "opaque", "emptiness", "center_depth")

    @dataclass
    class Config:
        geometry_type: str = "implicit-volume"
        """Registered geometry module."""
        geometry: object = module_field("geometry_type", "lift3d.geometry.base.BaseGeometry")
        """Config of the geometry module."""
        material_type: str = "diffuse-with-point-light"
        """Registered material module."""
        material: object = module_field("material_type", "lift3d.materials.base.BaseMaterial")
        """Config of the material module."""
        background_type: str = "neural-environment-map"
        """Registered background module."""
        background: object = module_field("background_type", "lift3d.backgrounds.base.BaseBackground")
        """Config of the background module."""
        renderer_type: str = "nerf-volume-renderer"
        """Registered renderer module."""
        renderer: object = module_field("renderer_type", "lift3d.renderers.base.BaseRenderer")
        """Config of the renderer module."""
        prompt_processor_type: str = "diffusers-prompt-processor"
        """Registered prompt processor."""
        prompt_processor: object = module_field("prompt_processor_type", "lift3d.prompts.base.BasePromptProcessor")
        """Config of the prompt processor."""
        guidance_type: str = "diffusers-sds-guidance"
        """Registered guidance module."""
        guidance: object = module_field("guidance_type", "lift3d.guidance.base.BaseGuidance")
        """Config of the guidance module."""
        loss: dict[str, Scheduled] = field(default_factory=_default_losses)
        """Weight ``lambda_<name>`` of each loss: sds (from the guidance), orient, sparsity, opaque,
        emptiness (SJC: mean of log(1 + emptiness_scale * w) over the ray samples' weights w),
        center_depth (SJC: -log of how much deeper the centre crop's mean depth is than the border's:
        the object in the middle of the view)."""
        emptiness_scale: float = 10.0
        """Scale inside SJC's emptiness loss log(1 + scale * w)."""
        center_ratio: float = 0.78125
        """Side of the centre crop of SJC's ``center_depth`` loss, as a fraction of the image (50 / 64)."""
        optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
        """Optimizer of the geometry, material and background."""
        video_fps: int = 30
        """Frame rate of the test turntable video."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        # the prompt and the prior are checked first: a prompt the prior can't read stops here
        self.build_guidance(cfg)
        self.geometry = self.build("lift3d.geometry.base.BaseGeometry", cfg.geometry_type, cfg.geometry)
        self.material = self.build("lift3d.materials.base.BaseMaterial", cfg.material_type, cfg.material)
        self.background = self.build("lift3d.backgrounds.base.BaseBackground", cfg.background_type, cfg.background)
        self.renderer = self.build(
            "lift3d.renderers.base.BaseRenderer", cfg.renderer_type, cfg.renderer, self.geometry, self.material, self.background
        )
        self._test_frames: list = []

    def build_guidance(self, cfg) -> None:
        """The prompt processor and the guidance (a method with another kind of prior overrides this)."""
        self.prompt_processor = self.build("lift3d.prompts.base.BasePromptProcessor", cfg.prompt_processor_type, cfg.prompt_processor)
        self.guidance = self.build(self.guidance_kind, cfg.guidance_type, cfg.guidance)

    TRAINABLE = (
        ("geometry", "lift3d.geometry.base.BaseGeometry"),
        ("material", "lift3d.materials.base.BaseMaterial"),
        ("background", "lift3d.backgrounds.base.BaseBackground"),
    )
    """The modules the optimizer trains, with their kinds."""

    @classmethod
    def config_errors(cls, cfg, path: str) -> list[str]:
        errors = super().config_errors(cfg, path)
        material_cls = find(cfg.material_type, BaseMaterial)
        geometry_cls = find(cfg.geometry_type, BaseGeometry)
        renderer_cls = find(cfg.renderer_type, BaseRenderer)
        if not issubclass(geometry_cls, renderer_cls.geometry_class):
            fix = "mesh-rasterize-renderer" if issubclass(geometry_cls, BaseExplicitGeometry) else "nerf-volume-renderer"
            errors.append(f"{path}.renderer_type: {cfg.renderer_type!r} cannot draw geometry {cfg.geometry_type!r}; use {fix}")
        if issubclass(geometry_cls, BaseExplicitGeometry) and _ever_positive(cfg.loss.get("lambda_emptiness", 0.0)):
            errors.append(f"{path}.loss.lambda_emptiness: the emptiness loss is on a volume renderer's ray samples; set it to 0")
        if issubclass(geometry_cls, BaseExplicitGeometry) and _ever_positive(cfg.loss.get("lambda_orient", 0.0)):
            errors.append(f"{path}.loss.lambda_orient: the orientation loss is for density fields; a mesh's faces already "
                          "face outward: set it to 0")
        normal_type = getattr(cfg.geometry, "normal_type", None)
        if normal_type == "none":
            fix = f"set {path}.geometry.normal_type to analytic or finite_difference"
            if material_cls.requires_normal:
                errors.append(f"{path}.geometry.normal_type: none, but material {cfg.material_type!r} shades with normals; "
                              f"{fix}, or use {path}.material_type=no-material")
            if _ever_positive(cfg.loss.get("lambda_orient", 0.0)):
                errors.append(f"{path}.loss.lambda_orient: the orientation loss needs normals but geometry.normal_type is none; {fix}")
        errors += prior_background_errors(cfg, path)
        names = cls.trainable_parameter_names(cfg)
        if names is not None:
            errors += param_lr_errors(cfg.optimizer.param_lrs, names)
        return errors

    @classmethod
    def trainable_parameter_names(cls, cfg) -> list[str] | None:
        """Names the optimizer will see, from modules built on the meta device (no memory, no
        weights); None when a module cannot be built there (then ``build_optimizer`` checks)."""
        modules = {}
        try:
            with torch.device("meta"):
                for name, kind in cls.TRAINABLE:
                    modules[name] = cls.build(kind, getattr(cfg, f"{name}_type"), getattr(cfg, name))
        except ConfigError:
            raise
        except Exception:
            return None
        names = [n for n, p in torch.nn.ModuleDict(modules).named_parameters() if p.requires_grad]
        # the guidance's trainable parts sit inside a prior that is not loaded here: named by module
        return names + [f"guidance.{m}" for m in getattr(cls.guidance_class(cfg), "trainable_modules", ())]

    def make_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer of the trainable modules, without the learning-rate schedule (which
        needs the trainer's ``max_steps``)."""
        trainable = {name: getattr(self, name) for name, _ in self.TRAINABLE}
        if getattr(self.guidance, "trainable_modules", ()):
            trainable["guidance"] = self.guidance  # VSD's LoRA and camera MLP, at param_lrs.guidance.* rates
        return build_optimizer(self.cfg.optimizer, torch.nn.ModuleDict(trainable))

    def configure_optimizers(self):
        optimizer = self.make_optimizer()
        schedule = build_lr_schedule(self.cfg.optimizer, optimizer, self.trainer.max_steps)
        return optimizer if schedule is None else {"optimizer": optimizer, "lr_scheduler": schedule}

    def forward(self, batch: CameraBatch, need_normal: bool = False) -> RenderOutput:
        return self.renderer(batch, need_normal=need_normal)

    def regularizers(self, out: RenderOutput) -> dict[str, torch.Tensor]:
        losses = {}
        if self.loss_weight("orient") > 0:
            if out.orient is None:
                from lift3d.errors import RunError

                raise RunError("lambda_orient > 0 needs normals; set system.geometry.normal_type to analytic or finite_difference")
            losses["orient"] = out.orient.sum() / (out.opacity > 0).sum().clamp(min=1)
        if self.loss_weight("sparsity") > 0:
            losses["sparsity"] = (out.opacity**2 + 0.01).sqrt().mean()
        if self.loss_weight("opaque") > 0:
            o = out.opacity.clamp(1e-3, 1 - 1e-3)
            losses["opaque"] = F.binary_cross_entropy(o, o)
        if self.loss_weight("emptiness") > 0:
            if out.sample_weights is None:
                from lift3d.errors import RunError

                raise RunError("lambda_emptiness > 0 needs a volume renderer (it penalises the ray samples' weights); set it to 0")
            w = out.sample_weights
            losses["emptiness"] = torch.log1p(self.cfg.emptiness_scale * w).mean() if w.numel() else w.sum()
        if self.loss_weight("center_depth") > 0:
            losses["center_depth"] = center_depth_loss(out.depth, self.cfg.center_ratio)
        return losses

    def needs_normal(self) -> bool:
        """Whether this step's render needs normals (beyond what the material asks for)."""
        return self.loss_weight("orient") > 0

    def guidance_input(self, out: RenderOutput) -> torch.Tensor:
        """What the guidance scores: the composited colours."""
        return out.comp_rgb

    def training_step(self, batch: CameraBatch, batch_idx: int):
        out = self(batch, need_normal=self.needs_normal())
        guidance_out = self.guidance(self.guidance_input(out), self.prompt_processor.embeddings, batch)
        total = self.weighted_total({**guidance_out.losses, **self.regularizers(out)})
        info = dict(guidance_out.info)
        if out.samples_total:
            info["samples_per_ray_evaluated_fraction"] = out.samples_evaluated / out.samples_total
        self.log_train_metrics(info)
        return total

    def display(self, rgb: torch.Tensor) -> torch.Tensor:
        """A render as an RGB image (a latent prior's renders are decoded)."""
        return self.guidance.to_display(rgb)

    def _eval_images(self, batch: CameraBatch) -> list:
        out = self(batch, need_normal=True)
        images = [self.display(out.comp_rgb[:1])[0]]
        if out.comp_normal is not None:
            normal = (out.comp_normal[0] + 1) / 2 * out.opacity[0] + (1 - out.opacity[0])
            images.append(normal)
        images.append(out.opacity[0])
        return images

    def validation_step(self, batch: CameraBatch, batch_idx: int) -> None:
        with RUN_PHASES.phase("validation"):
            frame = side_by_side(self._eval_images(batch))
            write_png(self.save_path(f"it{self.true_global_step}-val", f"{int(batch.index[0]):03d}.png"), frame)

    def on_test_epoch_start(self) -> None:
        self._test_frames = []

    def test_step(self, batch: CameraBatch, batch_idx: int) -> None:
        with RUN_PHASES.phase("test turntable"):
            frame = side_by_side(self._eval_images(batch))
            write_png(self.save_path(f"it{self.true_global_step}-test", f"{int(batch.index[0]):03d}.png"), frame)
            self._test_frames.append(frame)

    def on_test_epoch_end(self) -> None:
        if self._test_frames:
            with RUN_PHASES.phase("video"):
                write_video(self.save_path(f"it{self.true_global_step}-test.mp4"), self._test_frames, fps=self.cfg.video_fps)


def center_depth_loss(depth: torch.Tensor, center_ratio: float) -> torch.Tensor:
    """SJC's centre loss: -log(mean depth of the centre crop - mean depth of the border), per batch."""
    _, h, w, _ = depth.shape
    ch, cw = max(1, int(center_ratio * h)), max(1, int(center_ratio * w))
    top, left = (h - ch) // 2, (w - cw) // 2
    centre = depth[:, top : top + ch, left : left + cw]
    border_mean = (depth.sum() - centre.sum()) / max(depth.numel() - centre.numel(), 1)
    return -torch.log((centre.mean() - border_mean).clamp(min=1e-12))
