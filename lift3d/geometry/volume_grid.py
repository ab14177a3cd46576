"""``volume-grid``: a dense voxel grid of density and features (SJC's voxel NeRF).

Grid vertex ``(i, j, k)`` sits at ``-radius + 2 * radius * (i, j, k) / (size - 1)`` (x, y, z), so
trilinear interpolation reproduces the stored values exactly at the vertices. Features may have
any number of channels: 3 for colours, or a latent prior's channel count for rendering its
latent space directly (then ``feature_activation: none``). Density is
``activation(raw + density_shift + blob(x)) * exp(log_density_scale)`` with a learned scale, as in
SJC (whose ``density_shift`` is -10 with no blob; lift3d's bundled presets use the blob of the
hash-grid NeRF instead, so the scene starts as a ball). Normals are finite differences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from lift3d.geometry.base import BaseImplicitGeometry, GeometryOutput
from lift3d.geometry.implicit_volume import blob_bias, finite_difference_gradient, trunc_exp
from lift3d.registry import register


def trilinear(grid: Float[Tensor, "C D H W"], coords: Float[Tensor, "N 3"]) -> Float[Tensor, "N C"]:
    """Values of a grid stored [channel, z, y, x] at points given in [-1, 1]^3 (x, y, z), vertices at the bounds."""
    g = coords.view(1, -1, 1, 1, 3).to(grid.dtype)
    out = F.grid_sample(grid[None], g, mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(grid.shape[0], -1).t()


@register("volume-grid")
class VolumeGrid(BaseImplicitGeometry):
    """Density and feature voxels, trilinearly interpolated."""

    @dataclass
    class Config:
        radius: float = 1.0
        """Half-size of the scene box the grid spans."""
        grid_size: int = 64
        """Vertices per side."""
        n_feature_dims: int = 3
        """Feature channels (3: colour; 4: a Stable-Diffusion latent)."""
        feature_activation: Literal["sigmoid", "none"] = "sigmoid"
        """Activation of the features (none for latent features)."""
        feature_init_std: float = 0.0
        """Std of the initial raw features (SJC initialises them randomly; 0: a uniform grey)."""
        density_activation: Literal["softplus", "trunc_exp", "relu"] = "softplus"
        """Activation turning the raw density into a non-negative density."""
        density_shift: float = 0.0
        """Constant added to the raw density before the activation (SJC: -10, an empty start)."""
        density_bias: Literal["blob_dreamfusion", "blob_magic3d", "none"] = "blob_magic3d"
        """Density added at init so the scene starts as a blob at the centre (as implicit-volume)."""
        density_blob_scale: float = 10.0
        """Peak of the blob bias."""
        density_blob_std: float = 0.5
        """Width of the blob bias in world units."""
        learned_density_scale: bool = True
        """Multiply the density by exp(s) with a learned s (SJC's density scale)."""
        normal_type: Literal["finite_difference", "none"] = "finite_difference"
        """Normals by finite differences of the density, or none."""
        finite_difference_eps: float = 0.01
        """Step of finite-difference normals in world units."""
        finite_difference_scheme: Literal["central", "forward"] = "forward"
        """Central (6 extra density queries per point) or forward (3) differences."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.radius = cfg.radius
        n = cfg.grid_size
        self.density = nn.Parameter(torch.zeros(1, n, n, n))
        self.features = nn.Parameter(torch.randn(cfg.n_feature_dims, n, n, n) * cfg.feature_init_std)
        self.log_density_scale = nn.Parameter(torch.zeros(()), requires_grad=cfg.learned_density_scale)

    def _coords(self, points: Tensor) -> Tensor:
        return points / self.radius

    def forward_density(self, points: Float[Tensor, "N 3"]) -> Float[Tensor, "N"]:
        c = self.cfg
        raw = trilinear(self.density, self._coords(points))[:, 0] + c.density_shift
        raw = raw + blob_bias(points, c.density_bias, c.density_blob_scale, c.density_blob_std)
        act = {"softplus": F.softplus, "trunc_exp": trunc_exp, "relu": F.relu}[c.density_activation]
        return act(raw) * self.log_density_scale.exp()

    def features_at(self, points: Float[Tensor, "N 3"]) -> Float[Tensor, "N C"]:
        feats = trilinear(self.features, self._coords(points))
        return torch.sigmoid(feats) if self.cfg.feature_activation == "sigmoid" else feats

    def forward(self, points: Float[Tensor, "N 3"], with_normal: bool = False) -> GeometryOutput:
        density = self.forward_density(points)
        normal = None
        if with_normal and self.cfg.normal_type == "finite_difference":
            grad = finite_difference_gradient(self.forward_density, points, density, self.cfg.finite_difference_eps,
                                              self.cfg.finite_difference_scheme)
            normal = F.normalize(-grad, dim=-1)
        return GeometryOutput(density=density, features=self.features_at(points), normal=normal)
