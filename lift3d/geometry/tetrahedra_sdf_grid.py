"""``tetrahedra-sdf-grid``: DMTet, an SDF and a bounded deformation on a tetrahedral grid (Magic3D refine).

The surface is the zero level set of the per-vertex SDF (negative inside), extracted by marching
tetrahedra on the deformed grid: an explicit, watertight triangle mesh, differentiable in the SDF
and the deformations. Colour features come from a hash-grid field queried at surface points; it
has the same layout as ``implicit-volume``'s (``encoding``, ``feature_network``), so a coarse
NeRF's texture can be inherited (:mod:`lift3d.geometry.convert`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from lift3d.encodings.hash_grid import HashGridConfig, HashGridEncoding
from lift3d.encodings.mlp import MLPConfig, make_mlp
from lift3d.geometry.base import BaseExplicitGeometry, GeometryOutput
from lift3d.geometry.marching_tetrahedra import marching_tetrahedra
from lift3d.geometry.tetrahedra_grid import tetrahedral_grid
from lift3d.geometry.triangle_mesh import TriangleMesh
from lift3d.registry import register


@register("tetrahedra-sdf-grid")
class TetrahedraSDFGrid(BaseExplicitGeometry):
    """SDF + deformation per grid vertex -> marching tetrahedra -> mesh; hash-grid colour field."""

    @dataclass
    class Config:
        radius: float = 1.0
        """Half-size of the scene box the grid spans, [-radius, radius]^3."""
        isosurface_resolution: int = 64
        """Grid cells per side; the grid has 6 * resolution^3 tetrahedra (threestudio ships 32/64/128; any works here)."""
        isosurface_deformable_grid: bool = True
        """Learn a deformation of each grid vertex (DMTet); false: the surface moves only through the SDF."""
        max_deformation: float = 0.5
        """Bound of each vertex's deformation, in grid cells (tanh-bounded). Below 0.5 tetrahedra cannot invert."""
        fix_geometry: bool = False
        """Keep the SDF and deformations fixed (train only the colour field): texture-only refinement."""
        geometry_only: bool = False
        """No colour field: the surface has the constant albedo ``geometry_only_albedo`` (shape-only training)."""
        geometry_only_albedo: float = 0.7
        """Grey level of a geometry-only surface."""
        isosurface_remove_outliers: bool = False
        """Drop small floating pieces of the mesh before rendering."""
        isosurface_outlier_n_faces_threshold: float = 0.01
        """Pieces with fewer faces than this are dropped: a count, or below 1 a fraction of all faces."""
        init_sphere_radius: float = 0.5
        """Radius of the sphere the SDF starts as, when not converted from a coarse run."""
        n_feature_dims: int = 3
        """Number of surface features (3: albedo)."""
        encoding: HashGridConfig = field(default_factory=HashGridConfig)
        """Position encoding of the colour field (match the coarse NeRF's to inherit its texture)."""
        feature_network: MLPConfig = field(default_factory=MLPConfig)
        """MLP from the encoding to the features (match the coarse NeRF's to inherit its texture)."""
        feature_activation: Literal["sigmoid", "none"] = "sigmoid"
        """Activation of the features."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.radius = cfg.radius
        vertices, tets = tetrahedral_grid(cfg.isosurface_resolution, cfg.radius)
        # the grid is a function of the config: rebuilt, never saved
        self.register_buffer("grid_vertices", vertices, persistent=False)
        self.register_buffer("grid_tets", tets, persistent=False)
        sdf = vertices.norm(dim=-1) - cfg.init_sphere_radius
        deformation = torch.zeros_like(vertices)
        if cfg.fix_geometry:
            self.register_buffer("sdf", sdf)
            self.register_buffer("deformation", deformation)
        else:
            self.sdf = nn.Parameter(sdf)
            self.deformation = nn.Parameter(deformation)
        if not cfg.geometry_only:
            self.encoding = HashGridEncoding(cfg.encoding)
            self.feature_network = make_mlp(self.encoding.n_output_dims, cfg.n_feature_dims, cfg.feature_network)

    @property
    def cell_size(self) -> float:
        return 2 * self.radius / self.cfg.isosurface_resolution

    def deformed_vertices(self) -> Float[Tensor, "V 3"]:
        if not self.cfg.isosurface_deformable_grid:
            return self.grid_vertices
        return self.grid_vertices + torch.tanh(self.deformation) * (self.cfg.max_deformation * self.cell_size)

    def isosurface(self) -> TriangleMesh:
        vertices, faces = marching_tetrahedra(self.deformed_vertices(), self.grid_tets, self.sdf)
        mesh = TriangleMesh(vertices, faces)
        if self.cfg.isosurface_remove_outliers:
            mesh = mesh.remove_small_components(self.cfg.isosurface_outlier_n_faces_threshold)
        return mesh

    def features_at(self, points: Float[Tensor, "N 3"]) -> Float[Tensor, "N C"]:
        if self.cfg.geometry_only:
            return torch.full((points.shape[0], self.cfg.n_feature_dims), self.cfg.geometry_only_albedo,
                              dtype=points.dtype, device=points.device)
        feats = self.feature_network(self.encoding(self.contract(points)))
        return torch.sigmoid(feats) if self.cfg.feature_activation == "sigmoid" else feats

    def contract(self, points: Tensor) -> Tensor:
        return ((points / self.radius + 1.0) * 0.5).clamp(0, 1)

    def forward(self, points: Float[Tensor, "N 3"], with_normal: bool = False) -> GeometryOutput:
        """Features at points (a mesh has no density: zeros, so density-based tools see empty space)."""
        return GeometryOutput(density=points.new_zeros(points.shape[0]), features=self.features_at(points))

    @torch.no_grad()
    def set_sdf_from_density(self, density: Float[Tensor, "R R R"], level: float) -> None:
        """Initialise the SDF from a density grid over the scene box (cell centres, indexed [x, y, z]):
        the signed distance to the surface ``density = level``, negative inside, in world units.

        A distance transform of the inside/outside masks gives a true distance field, well scaled
        for the optimiser whatever the density's magnitude (threestudio's ``-(density - level)``
        is not: its slope is the density's). Deformations are reset to zero.
        """
        from scipy.ndimage import distance_transform_edt

        inside = (density > level).cpu().numpy()
        voxel = 2 * self.radius / density.shape[0]
        d_out = distance_transform_edt(~inside)  # outside voxels: distance to the nearest inside one
        d_in = distance_transform_edt(inside)
        sdf = np.where(inside, -(d_in - 0.5), d_out - 0.5) * voxel
        vol = torch.from_numpy(sdf).float().permute(2, 1, 0)[None, None]  # grid_sample reads (z, y, x)
        coords = (self.grid_vertices / self.radius).reshape(1, -1, 1, 1, 3).cpu()
        values = F.grid_sample(vol, coords, mode="bilinear", padding_mode="border", align_corners=False).reshape(-1)
        self.sdf.copy_(values.to(self.sdf))
        self.deformation.zero_()
