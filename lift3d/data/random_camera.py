"""``random-camera-datamodule``: random training cameras around the origin, fixed evaluation orbits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from lift3d.config import Scheduled, resolve
from lift3d.data.batch import CameraBatch
from lift3d.data.camera_math import (
    look_at,
    projection_matrix,
    rays_from_cameras,
    sample_elevation,
    sample_point_lights,
    spherical_to_position,
    stratified_uniform,
    uniform,
)
from lift3d.registry import register


@dataclass
class RandomCameraConfig:
    """Camera distribution for training and the evaluation orbits."""

    resolution: Scheduled = 64
    """Training image size (square); may be scheduled as ``[step, size]`` points, e.g. [[0, 64], [5000, 128]],
    read as ``resolution_schedule`` says."""
    resolution_schedule: Literal["linear", "milestones"] = "linear"
    """How a scheduled ``resolution`` is read: ``linear`` between points, or ``milestones``: each size
    holds from its step until the next point's step (threestudio's ``resolution_milestones``)."""
    batch_size: Scheduled = 1
    """Training cameras per step; may be scheduled like ``resolution`` (and read the same way), e.g.
    [[0, 12], [200, 4], [300, 2]] with ``resolution_schedule: milestones``."""
    elevation_range: tuple[float, float] = (-10.0, 90.0)
    """Training elevation range (degrees)."""
    elevation_sphere_prob: float = 0.5
    """Probability, per batch, of sampling elevation with equal weight per area of the viewing
    sphere; otherwise uniform in degrees, which favours the poles (threestudio mixes the two 50/50)."""
    azimuth_range: tuple[float, float] = (-180.0, 180.0)
    """Training azimuth range (degrees); 0 is the object's front."""
    batch_uniform_azimuth: bool = True
    """Stratify azimuth within a batch: camera ``i`` of ``B`` draws from the ``i``-th of ``B`` equal
    slices of the range, so every batch sees the object from all round."""
    camera_distance_range: tuple[float, float] = (1.0, 1.5)
    """Training camera distance range."""
    camera_perturb: float = 0.1
    """Camera positions move by a uniform offset in [-camera_perturb, camera_perturb] per axis."""
    center_perturb: float = 0.2
    """The point looked at moves from the origin by Gaussian noise of this std per axis."""
    up_perturb: float = 0.02
    """The up vector gets Gaussian noise of this std per axis (a slight camera roll)."""
    fovy_range: tuple[float, float] = (40.0, 70.0)
    """Training vertical field of view range (degrees)."""
    light_distance_range: tuple[float, float] = (0.8, 1.5)
    """Distance of the point light from the origin."""
    light_position_perturb: float = 1.0
    """Noise added to the camera direction to place the light."""
    eval_resolution: int = 64
    """Validation and test image size."""
    eval_elevation: float = 15.0
    """Elevation of the evaluation orbit (degrees)."""
    eval_camera_distance: float = 1.25
    """Distance of the evaluation cameras."""
    eval_fovy: float = 55.0
    """Field of view of the evaluation cameras (degrees)."""
    n_val_views: int = 4
    """Cameras in each validation (evenly spaced in azimuth)."""
    n_test_views: int = 60
    """Frames of the test turntable."""


def make_batch(
    elevation: torch.Tensor,
    azimuth: torch.Tensor,
    distance: torch.Tensor,
    fovy: torch.Tensor,
    light_position: torch.Tensor,
    resolution: int,
    index: torch.Tensor | None = None,
    position_offset: torch.Tensor | None = None,
    center: torch.Tensor | None = None,
    up: torch.Tensor | None = None,
) -> CameraBatch:
    """A :class:`CameraBatch` for the given camera parameters (and optional perturbations).

    ``elevation``, ``azimuth`` and ``distance`` stay the nominal values (view-dependent prompts
    read them); the perturbations move only the camera matrices and rays.
    """
    position = spherical_to_position(elevation, azimuth, distance)
    if position_offset is not None:
        position = position + position_offset
    c2w = look_at(position, up if up is not None else (0.0, 0.0, 1.0), center)
    rays_o, rays_d = rays_from_cameras(c2w, resolution, resolution, fovy)
    mvp = projection_matrix(fovy) @ torch.linalg.inv(c2w)
    if index is None:
        index = torch.zeros(elevation.shape[0], dtype=torch.long)
    return CameraBatch(rays_o, rays_d, c2w, mvp, elevation, azimuth, distance, fovy, light_position, index)


def resolution_at(cfg: RandomCameraConfig, step: int) -> int:
    """Training image size at ``step`` under ``resolution_schedule``."""
    return scheduled_int(cfg.resolution, cfg.resolution_schedule, step)


def batch_size_at(cfg: RandomCameraConfig, step: int) -> int:
    """Training cameras per step at ``step`` (``batch_size`` read as ``resolution_schedule`` says)."""
    return scheduled_int(cfg.batch_size, cfg.resolution_schedule, step)


def scheduled_int(value, schedule: str, step: int) -> int:
    """A scheduled integer (an image size, a batch size) at ``step``: ``linear`` or ``milestones``."""
    if isinstance(value, list) and schedule == "milestones":
        current = value[0][1]
        for s, size in value:
            if step >= s:
                current = size
        return int(round(current))
    return int(round(resolve(value, step)))


class RandomCameraIterable(IterableDataset):
    """Endless stream of random camera batches.

    Batch ``i`` is drawn from a generator seeded by (run seed, ``i``), so the stream does not
    depend on how far the data loader has prefetched, and a resumed run continues with
    exactly the batches an uninterrupted run would have seen. ``i`` is also the step that
    scheduled values (the resolution) are resolved at. On several devices each rank draws
    its own stream (the seed includes the rank; rank 0's stream is the single-device one).
    """

    def __init__(self, cfg: RandomCameraConfig, rank: int = 0) -> None:
        self.cfg = cfg
        self.base_seed = torch.initial_seed()
        self.start_index = 0
        self.rank = rank

    def start_at(self, index: int) -> None:
        """Make the next iterator start with batch ``index`` (the global step when resuming)."""
        self.start_index = index

    def sample(self, index: int) -> CameraBatch:
        c = self.cfg
        b = batch_size_at(c, index)
        # the CPU generator keeps only the low 32 bits of a seed: the rank term must change those
        g = torch.Generator().manual_seed((self.base_seed * 1_000_003 + index + self.rank * 2_654_435_761) % (2**63))
        if float(torch.rand((), generator=g)) < c.elevation_sphere_prob:
            elev = sample_elevation(b, *c.elevation_range, generator=g)
        else:
            elev = uniform(b, *c.elevation_range, generator=g)
        azim = (stratified_uniform if c.batch_uniform_azimuth else uniform)(b, *c.azimuth_range, generator=g)
        dist = uniform(b, *c.camera_distance_range, generator=g)
        fovy = uniform(b, *c.fovy_range, generator=g)
        offset = (torch.rand(b, 3, generator=g) * 2 - 1) * c.camera_perturb
        center = torch.randn(b, 3, generator=g) * c.center_perturb
        up = torch.tensor([0.0, 0.0, 1.0]) + torch.randn(b, 3, generator=g) * c.up_perturb
        light = sample_point_lights(spherical_to_position(elev, azim, dist) + offset, c.light_distance_range, c.light_position_perturb, g)
        return make_batch(elev, azim, dist, fovy, light, resolution_at(c, index), position_offset=offset, center=center, up=up)

    def __iter__(self):
        index = self.start_index
        while True:
            yield self.sample(index)
            index += 1


class OrbitDataset(Dataset):
    """``n`` cameras evenly spaced in azimuth at a fixed elevation, one batch each, starting at the front."""

    def __init__(self, cfg: RandomCameraConfig, n: int) -> None:
        self.cfg, self.n = cfg, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> CameraBatch:
        return self.camera(i)

    def camera(self, i: int, azimuth_offset: float = 0.0) -> CameraBatch:
        """Camera ``i`` of the orbit, which starts at ``azimuth_offset`` degrees."""
        c = self.cfg
        azim = torch.tensor([azimuth_offset + 360.0 * i / self.n]).remainder(360.0)
        azim = torch.where(azim >= 180.0, azim - 360.0, azim)
        elev = torch.tensor([c.eval_elevation])
        dist = torch.tensor([c.eval_camera_distance])
        fovy = torch.tensor([c.eval_fovy])
        # evaluation light: from the camera, a little above it, at the farthest training distance
        light = torch.nn.functional.normalize(spherical_to_position(elev + 30.0, azim, dist), dim=-1) * max(c.light_distance_range)
        return make_batch(elev, azim, dist, fovy, light, c.eval_resolution, index=torch.tensor([i]))


def _own_generator() -> torch.Generator:
    """A generator for the loader's base seed, so creating an iterator never draws from the global RNG
    (which would shift every later random number after a resume)."""
    return torch.Generator().manual_seed(0)


@register("random-camera-datamodule")
class RandomCameraDataModule(pl.LightningDataModule):
    Config = RandomCameraConfig

    def __init__(self, cfg: RandomCameraConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.train_dataset = RandomCameraIterable(cfg)
        self.val_dataset = OrbitDataset(cfg, cfg.n_val_views)
        self.test_dataset = OrbitDataset(cfg, cfg.n_test_views)

    @classmethod
    def check_config(cls, cfg: RandomCameraConfig, path: str) -> None:
        from lift3d.errors import ConfigError

        for name in ("elevation_range", "azimuth_range", "camera_distance_range", "fovy_range", "light_distance_range"):
            lo, hi = getattr(cfg, name)
            if lo > hi:
                raise ConfigError(f"{path}.{name}: lower bound {lo} is above upper bound {hi}; write [low, high]")
        sizes = [v for _, v in cfg.batch_size] if isinstance(cfg.batch_size, list) else [cfg.batch_size]
        if min(sizes) < 1:
            raise ConfigError(f"{path}.batch_size: must be at least 1, got {cfg.batch_size}")
        if not 0.0 <= cfg.elevation_sphere_prob <= 1.0:
            raise ConfigError(f"{path}.elevation_sphere_prob: must be in [0, 1], got {cfg.elevation_sphere_prob}")
        for name in ("camera_perturb", "center_perturb", "up_perturb"):
            if getattr(cfg, name) < 0:
                raise ConfigError(f"{path}.{name}: must be at least 0, got {getattr(cfg, name)}")

    def train_dataloader(self) -> DataLoader:
        # called after a checkpoint is restored: a resumed run continues the camera stream
        self.train_dataset.start_at(int(self.trainer.global_step) if self.trainer is not None else 0)
        self.train_dataset.rank = int(self.trainer.global_rank) if self.trainer is not None else 0
        return DataLoader(self.train_dataset, batch_size=None, num_workers=0, generator=_own_generator())

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_dataset, batch_size=None, shuffle=False, num_workers=0, generator=_own_generator())

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_dataset, batch_size=None, shuffle=False, num_workers=0, generator=_own_generator())

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
