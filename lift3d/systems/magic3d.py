"""``magic3d-system``: Magic3D, a coarse NeRF then the same asset refined as a DMTet mesh.

* ``stage: coarse`` is DreamFusion's optimisation of a hash-grid NeRF (volume renderer).
* ``stage: refine`` optimises a mesh geometry (``tetrahedra-sdf-grid``) rendered by a rasterizer,
  started from a coarse run by ``geometry_convert_from`` (:mod:`lift3d.geometry.convert`), with
  the mesh regularisers ``normal_consistency`` and ``laplacian_smoothness`` (scheduled weights).

A fresh refine run converts once, before any file is written; a resumed one (``resume=``) takes
the mesh geometry from its own checkpoint and does not read the coarse run again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch

from lift3d.geometry.base import BaseExplicitGeometry, BaseGeometry, BaseImplicitGeometry
from lift3d.registry import find, register
from lift3d.renderers.base import RenderOutput
from lift3d.systems.dreamfusion import DreamFusionSystem, _ever_positive


@dataclass
class MeshStageFields:
    """The stage switch and the NeRF-to-mesh conversion settings of a coarse-to-fine method (Magic3D,
    Magic123, ProlificDreamer): mixed into their system configs."""

    stage: Literal["coarse", "refine"] = "coarse"
    """``coarse``: a NeRF geometry; ``refine``: a mesh geometry (tetrahedra-sdf-grid) on a mesh renderer."""
    geometry_convert_from: Optional[str] = None
    """Refine: the coarse trial directory to start from (SDF from its density, colour field copied);
    a trial with a mesh geometry (DMTet) of the same grid is copied as it is."""
    geometry_convert_inherit_texture: bool = True
    """Copy the coarse run's colour field (hash grid + MLP; the encodings must match)."""
    geometry_convert_level: Optional[float] = None
    """Density of the coarse surface; null: the level whose silhouettes match the NeRF's renders best."""
    geometry_convert_resolution: int = 128
    """Density grid resolution sampled for the conversion."""
    geometry_convert_carve_views: int = 0
    """Cameras (around the object, elevations -5 to 55 degrees) whose NeRF silhouettes carve the
    density before the level is chosen: cells a camera sees outside the NeRF's opacity > 0.5 are
    emptied, so haze over a concave part does not close it. 0: no carving."""


@register("magic3d-system")
class Magic3DSystem(DreamFusionSystem):
    """DreamFusion's loop with a stage switch: NeRF (coarse) or DMTet mesh (refine)."""

    regularizer_names = DreamFusionSystem.regularizer_names + ("normal_consistency", "laplacian_smoothness")

    @dataclass
    class Config(DreamFusionSystem.Config, MeshStageFields):
        pass

    mesh_stages: tuple[str, ...] = ("refine",)
    """Stages that optimise a mesh geometry (the others optimise a NeRF)."""

    @classmethod
    def config_errors(cls, cfg, path: str) -> list[str]:
        errors = super().config_errors(cfg, path)
        geometry_cls = find(cfg.geometry_type, BaseGeometry)
        on_mesh = cfg.stage in cls.mesh_stages
        if not on_mesh and not issubclass(geometry_cls, BaseImplicitGeometry):
            errors.append(f"{path}.geometry_type: the {cfg.stage} stage optimises a NeRF, not {cfg.geometry_type!r}; "
                          f"use implicit-volume, or set {path}.stage to one of {list(cls.mesh_stages)}")
        if on_mesh and not issubclass(geometry_cls, BaseExplicitGeometry):
            errors.append(f"{path}.geometry_type: the {cfg.stage} stage optimises a mesh, not {cfg.geometry_type!r}; "
                          f"use tetrahedra-sdf-grid, or set {path}.stage=coarse")
        if not on_mesh and cfg.geometry_convert_from:
            errors.append(f"{path}.geometry_convert_from: only a mesh stage starts from another run; "
                          f"set {path}.stage to one of {list(cls.mesh_stages)}")
        for name in ("normal_consistency", "laplacian_smoothness"):
            if not on_mesh and _ever_positive(cfg.loss.get(f"lambda_{name}", 0.0)):
                errors.append(f"{path}.loss.lambda_{name}: a mesh regulariser, but the {cfg.stage} stage has no mesh; set it to 0")
        return errors

    def prepare_run(self, datamodule, resuming: bool) -> None:
        if self.cfg.stage not in self.mesh_stages or resuming or not self.cfg.geometry_convert_from:
            return
        from lift3d.geometry.convert import convert_to_mesh_geometry

        report = convert_to_mesh_geometry(self.geometry, self.cfg.geometry_convert_from, self.cfg.geometry_convert_inherit_texture,
                                          self.cfg.geometry_convert_level, self.cfg.geometry_convert_resolution,
                                          carve_views=self.cfg.geometry_convert_carve_views)
        print(report.line())

    def regularizers(self, out: RenderOutput) -> dict[str, torch.Tensor]:
        losses = super().regularizers(out)
        if out.mesh is not None:
            if self.loss_weight("normal_consistency") > 0:
                losses["normal_consistency"] = out.mesh.normal_consistency()
            if self.loss_weight("laplacian_smoothness") > 0:
                losses["laplacian_smoothness"] = out.mesh.laplacian_smoothness()
        return losses
