"""``single-image-datamodule``: one input image seen from a known reference camera, plus random cameras.

Each training batch holds the reference view (its camera, colours and foreground mask) and a
batch of random cameras around the object for the view-conditioned prior. The reference camera
(elevation, azimuth, distance, field of view) comes from the config; the random cameras follow
``random_camera`` (a :class:`RandomCameraConfig`, with resolution and batch-size milestones).
Validation and test orbits start at the reference camera's azimuth, so frame 0 is the input view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional
from pathlib import Path

import lightning.pytorch as pl
import torch
from jaxtyping import Float
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

from lift3d.config import Scheduled
from lift3d.data.batch import CameraBatch
from lift3d.data.camera_math import spherical_to_position
from lift3d.data.random_camera import (
    OrbitDataset,
    RandomCameraConfig,
    RandomCameraIterable,
    _own_generator,
    make_batch,
    scheduled_int,
)
from lift3d.data.reference_image import ReferenceImage, load_reference_image
from lift3d.errors import ConfigError
from lift3d.registry import register


@dataclass
class SingleImageConfig:
    """The input image, its camera, and the random cameras around it."""

    image_path: str
    """PNG or JPEG of one object: foreground from its alpha, or keyed from a plain background."""
    reference_resolution: Scheduled = 32
    """Size the reference view is rendered and compared at; may be scheduled (read as
    ``random_camera.resolution_schedule`` says), e.g. [[0, 128], [200, 256], [300, 512]]."""
    depth_path: Optional[str] = None
    """Relative depth of the input, for the system's ``depth`` loss: a .npy array or a grayscale PNG of
    the image's size, larger is farther, any scale and offset (e.g. a monocular depth estimate made
    beforehand; lift3d downloads no estimator). Only its foreground pixels are used."""
    recentre: bool = True
    """Crop a square around the foreground and pad it to ``border_ratio`` (for photos); world
    renders that are already framed as the reference camera sees them keep this off."""
    border_ratio: float = 0.2
    """Margin on each side of the recentred object, as a fraction of the image side."""
    elevation_deg: float = 0.0
    """Elevation of the reference camera (degrees)."""
    azimuth_deg: float = 0.0
    """Azimuth of the reference camera (degrees); the object's front is at azimuth 0."""
    camera_distance: float = 3.8
    """Distance of the reference camera from the origin."""
    fovy_deg: float = 20.0
    """Vertical field of view of the reference camera (degrees)."""
    light_distance: float = 2.25
    """The reference view's point light sits on the camera's side at this distance (shading materials only)."""
    random_camera: RandomCameraConfig = field(default_factory=RandomCameraConfig)
    """Random training cameras and the evaluation orbits (``eval_*``, ``n_val_views``, ``n_test_views``)."""


@dataclass
class ImageConditionedBatch:
    """One training step of image-to-3D: the reference view and random views."""

    reference: CameraBatch
    """The reference camera (batch of 1)."""
    reference_rgb: Float[Tensor, "1 H W 3"]
    """The input image in [0, 1], background pixels set to the background colour."""
    reference_mask: Float[Tensor, "1 H W 1"]
    """Its foreground."""
    random: CameraBatch
    """Random cameras for the prior."""
    reference_depth: Float[Tensor, "1 H W 1"] | None = None
    """Relative depth of the input, when ``depth_path`` is given."""


class SingleImageIterable(IterableDataset):
    """Endless stream of :class:`ImageConditionedBatch`; batch ``i`` depends only on (seed, ``i``)."""

    def __init__(self, cfg: SingleImageConfig, images: "ReferenceViews") -> None:
        self.cfg, self.images = cfg, images
        self.random = RandomCameraIterable(cfg.random_camera)
        self._reference_cameras: dict[int, CameraBatch] = {}

    def start_at(self, index: int) -> None:
        self.random.start_at(index)

    def sample(self, index: int) -> ImageConditionedBatch:
        size = scheduled_int(self.cfg.reference_resolution, self.cfg.random_camera.resolution_schedule, index)
        ref = self.images.at(size)
        if size not in self._reference_cameras:  # the same camera every step: its rays are built once per size
            self._reference_cameras[size] = reference_camera(self.cfg, size)
        return ImageConditionedBatch(
            reference=self._reference_cameras[size],
            reference_rgb=ref.rgb[None],
            reference_mask=ref.mask[None],
            random=self.random.sample(index),
            reference_depth=ref.depth[None] if ref.depth is not None else None,
        )

    def __iter__(self):
        index = self.random.start_index
        while True:
            yield self.sample(index)
            index += 1


def reference_camera(cfg: SingleImageConfig, resolution: int) -> CameraBatch:
    """The reference camera as a batch of one, its light beside the camera."""
    elev, azim = torch.tensor([cfg.elevation_deg]), torch.tensor([cfg.azimuth_deg])
    dist, fovy = torch.tensor([cfg.camera_distance]), torch.tensor([cfg.fovy_deg])
    light = torch.nn.functional.normalize(spherical_to_position(elev + 30.0, azim, dist), dim=-1) * cfg.light_distance
    return make_batch(elev, azim, dist, fovy, light, resolution)


class ReferenceViews:
    """The input image at each resolution it is asked for (loaded once per size)."""

    def __init__(self, cfg: SingleImageConfig, where: str = "data") -> None:
        self.cfg, self.where = cfg, where
        self._cache: dict[int, ReferenceImage] = {}

    def at(self, size: int) -> ReferenceImage:
        if size not in self._cache:
            depth = Path(self.cfg.depth_path) if self.cfg.depth_path else None
            self._cache[size] = load_reference_image(Path(self.cfg.image_path), size, self.cfg.recentre, self.cfg.border_ratio,
                                                     f"{self.where}.image_path", depth_path=depth)
        return self._cache[size]

    @property
    def background(self) -> Float[Tensor, "3"]:
        return self.at(8).background


class ReferenceOrbit(Dataset):
    """``n`` evaluation cameras evenly spaced in azimuth from the reference camera's azimuth."""

    def __init__(self, cfg: SingleImageConfig, n: int) -> None:
        self.cfg, self.n = cfg, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> CameraBatch:
        return OrbitDataset(self.cfg.random_camera, self.n).camera(i, azimuth_offset=self.cfg.azimuth_deg)


@register("single-image-datamodule")
class SingleImageDataModule(pl.LightningDataModule):
    Config = SingleImageConfig

    def __init__(self, cfg: SingleImageConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.reference_views = ReferenceViews(cfg)
        self.train_dataset = SingleImageIterable(cfg, self.reference_views)
        self.val_dataset = ReferenceOrbit(cfg, cfg.random_camera.n_val_views)
        self.test_dataset = ReferenceOrbit(cfg, cfg.random_camera.n_test_views)

    @property
    def background(self) -> Float[Tensor, "3"]:
        """Background colour of the input image (white for images with alpha)."""
        return self.reference_views.background

    @classmethod
    def check_config(cls, cfg: SingleImageConfig, path: str) -> None:
        from lift3d.data.random_camera import RandomCameraDataModule

        RandomCameraDataModule.check_config(cfg.random_camera, f"{path}.random_camera")
        if not 0.0 <= cfg.border_ratio < 0.5:
            raise ConfigError(f"{path}.border_ratio: must be in [0, 0.5), got {cfg.border_ratio}")
        if cfg.camera_distance <= 0 or not 0 < cfg.fovy_deg < 180:
            raise ConfigError(f"{path}: the reference camera needs camera_distance > 0 and 0 < fovy_deg < 180")
        ReferenceViews(cfg, path).at(8)  # the image is read and its foreground found now, before any work

    def train_dataloader(self) -> DataLoader:
        self.train_dataset.start_at(int(self.trainer.global_step) if self.trainer is not None else 0)
        self.train_dataset.random.rank = int(self.trainer.global_rank) if self.trainer is not None else 0
        return DataLoader(self.train_dataset, batch_size=None, num_workers=0, generator=_own_generator())

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_dataset, batch_size=None, shuffle=False, num_workers=0, generator=_own_generator())

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_dataset, batch_size=None, shuffle=False, num_workers=0, generator=_own_generator())

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
