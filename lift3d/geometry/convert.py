"""From a trained coarse run (a NeRF) to a mesh geometry (DMTet): ``system.geometry_convert_from``.

1. The coarse trial's config and checkpoint give its geometry and renderer (no prior is loaded).
2. The density is carved by the NeRF's own silhouettes (opacity > 0.5) from ``carve_views``
   cameras around the object at several elevations (:func:`lift3d.export.surface_level.silhouette_hull`):
   cells that a camera sees outside the silhouette are emptied, so haze over a concave part (a
   snowman's neck) does not close it.
3. The isosurface level is chosen by the silhouette rule of the export
   (:func:`lift3d.export.surface_level.silhouette_matched_level`): the density whose level set's
   silhouettes best match the NeRF's own opacity from the same cameras (eight of its test cameras
   without carving). threestudio's automatic threshold (the mean of the densities above 1e-5) is
   often far off (empty or bloated meshes, a jump between coarse and refine, threestudio #45,
   #311); matching what the NeRF renders leaves thin haze out and keeps what the user saw.
4. The SDF is the signed distance to that level set (a distance transform, so it is well
   scaled whatever the density's magnitude); the colour field (hash grid + MLP) is copied.
5. A conversion that would start refinement from a broken mesh stops with what to do: an empty
   surface, or one that reaches the edge of the tetrahedral grid (it would be cut open there).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lift3d.errors import ConfigError, RunError
from lift3d.geometry.base import BaseGeometry, BaseImplicitGeometry, cell_centres
from lift3d.geometry.tetrahedra_sdf_grid import TetrahedraSDFGrid


@dataclass
class ConversionReport:
    """What a conversion did, printed and kept by the system."""

    source: str
    level: float
    silhouette_iou: float
    faces: int
    inherited_texture: bool
    copied_mesh: bool = False
    """The source was a mesh stage's DMTet grid, copied as it is (no level, no silhouettes)."""

    def line(self) -> str:
        tex = ", texture inherited" if self.inherited_texture else ""
        if self.copied_mesh:
            return f"copied the mesh geometry of {self.source}: {self.faces:,} faces{tex}"
        return (f"converted {self.source} to a mesh geometry: density level {self.level:.4g} "
                f"(level-set silhouettes vs the NeRF's IoU {self.silhouette_iou:.3f}), {self.faces:,} faces{tex}")


@dataclass
class CoarseRun:
    """A trained run: its geometry (a NeRF, or DMTet of a mesh stage), renderer and test cameras."""

    geometry: BaseImplicitGeometry | TetrahedraSDFGrid
    renderer: torch.nn.Module
    cameras: list


def load_coarse_run(source: str) -> CoarseRun:
    """The geometry (with weights) and occupancy grid of a trial directory or its checkpoint."""
    import lightning.pytorch as pl

    from lift3d.backgrounds.solid_color import SolidColorBackground
    from lift3d.cli import resolve_resume
    from lift3d.config import load_mapping, parse
    from lift3d.experiment import ExperimentConfig
    from lift3d.materials.no_material import NoMaterial
    from lift3d.registry import find
    from lift3d.renderers.base import BaseRenderer

    try:
        ckpt, trial = resolve_resume(source)
    except RunError as exc:
        raise RunError(f"system.geometry_convert_from: {exc}") from exc
    if trial is None:
        raise RunError(f"system.geometry_convert_from={source}: a checkpoint outside its trial directory; "
                       "pass the coarse trial directory (it holds configs/parsed.yaml)")
    cfg = parse(ExperimentConfig, load_mapping(trial / "configs" / "parsed.yaml", []))
    geometry = find(cfg.system.geometry_type, BaseGeometry)(cfg.system.geometry)
    if not isinstance(geometry, (BaseImplicitGeometry, TetrahedraSDFGrid)):
        raise RunError(f"system.geometry_convert_from={source}: that run's geometry {cfg.system.geometry_type!r} is neither a "
                       "density field nor a DMTet grid; convert from a coarse (NeRF) run or a mesh stage's run")
    renderer = find(cfg.system.renderer_type, BaseRenderer)(
        cfg.system.renderer, geometry, NoMaterial(None), SolidColorBackground(SolidColorBackground.Config()))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    geometry.load_state_dict({k[len("geometry."):]: v for k, v in state.items() if k.startswith("geometry.")})
    own = renderer.state_dict()
    renderer.load_state_dict({k: state.get(f"renderer.{k}", v) for k, v in own.items()})
    datamodule = find(cfg.data_type, pl.LightningDataModule)(cfg.data)
    cameras = [datamodule.test_dataset[i] for i in range(len(datamodule.test_dataset))]
    return CoarseRun(geometry.eval(), renderer.eval(), cameras)


CARVE_ELEVATIONS = (-5.0, 10.0, 25.0, 40.0, 55.0)
"""Elevations (degrees) the carving cameras cycle through: below, around and above the object."""


def carving_cameras(n: int, distance: float, fovy: float, resolution: int = 64) -> list:
    """One batch of ``n`` cameras looking at the origin, azimuths evenly spaced, elevations cycling
    through :data:`CARVE_ELEVATIONS` (a list, as the silhouette functions take)."""
    from lift3d.data.random_camera import make_batch

    elevation = torch.tensor(CARVE_ELEVATIONS)[torch.arange(n) % len(CARVE_ELEVATIONS)]
    azimuth = 7.5 + 360.0 * torch.arange(n, dtype=torch.float32) / n
    return [make_batch(elevation, azimuth, torch.full((n,), distance), torch.full((n,), fovy), torch.zeros(n, 3), resolution)]


@torch.no_grad()
def convert_to_mesh_geometry(
    target: TetrahedraSDFGrid, source: str, inherit_texture: bool = True, level: float | None = None,
    resolution: int = 128, views: int = 8, carve_views: int = 0,
) -> ConversionReport:
    """Initialise ``target`` (DMTet) from the coarse run at ``source``; see the module docstring."""
    from lift3d.export.mesh_export import evenly_spaced
    from lift3d.export.surface_level import SurfaceLevel, silhouette_hull, silhouette_matched_level

    coarse = load_coarse_run(source)
    geo = coarse.geometry
    if isinstance(geo, TetrahedraSDFGrid):
        return copy_mesh_geometry(target, geo, str(source), inherit_texture)
    r = target.radius
    box = (torch.full((3,), -r), torch.full((3,), r))
    density = geo.density_grid(resolution, bbox=box).cpu()
    if r > geo.radius:  # outside the coarse scene box the NeRF has no say
        density[(cell_centres(*box, resolution).abs() > geo.radius).any(-1)] = 0
    if carve_views > 0:
        first = coarse.cameras[0]
        cams = carving_cameras(carve_views, float(first.distance[0]), float(first.fovy[0]))
        opacity = [coarse.renderer(c).opacity[..., 0] for c in cams]
        density = density * silhouette_hull(cams, opacity, box[0], box[1], resolution)
    else:
        cams = evenly_spaced(coarse.cameras, views)
        opacity = [coarse.renderer(c).opacity[..., 0] for c in cams] if level is None else []
    if level is None:
        surface = silhouette_matched_level(density, box[0], box[1], cams, opacity)
    else:
        surface = SurfaceLevel(float(level), float("nan"), "user")
    if not bool((density > surface.level).any()):
        raise RunError(f"system.geometry_convert_from={source}: no density reaches the level {surface.level:.4g} "
                       f"(max {density.max().item():.4g}): the coarse run is empty; train it longer, or set "
                       "system.geometry_convert_level below the max")
    target.set_sdf_from_density(density, surface.level)
    boundary = (target.grid_vertices.abs() >= r - 1e-6).any(-1)
    if bool((target.sdf[boundary] < 0).any()):
        raise RunError(f"system.geometry_convert_from={source}: the surface at density {surface.level:.4g} reaches the edge "
                       f"of the tetrahedral grid (radius {r}) and would be cut open; raise system.geometry.radius, or set "
                       "system.geometry_convert_level higher to leave out the haze")
    if inherit_texture:
        copy_texture(geo, target, source)
    faces = target.isosurface().n_faces
    if faces == 0:
        raise RunError(f"system.geometry_convert_from={source}: the surface at density {surface.level:.4g} is thinner than a "
                       f"grid cell; raise system.geometry.isosurface_resolution")
    return ConversionReport(str(source), surface.level, surface.silhouette_iou, faces, inherit_texture)


def copy_texture(source: torch.nn.Module, target: TetrahedraSDFGrid, where: str) -> None:
    """Copy the colour field (``encoding`` and ``feature_network``) of the coarse geometry."""
    if target.cfg.geometry_only:
        return
    for name in ("encoding", "feature_network"):
        src, dst = getattr(source, name, None), getattr(target, name)
        if src is None:
            raise RunError(f"system.geometry_convert_from={where}: the source run's geometry has no {name} to inherit (geometry_only); "
                           "set system.geometry_convert_inherit_texture=false")
        theirs, ours = src.state_dict(), dst.state_dict()
        mismatch = [k for k in ours if k not in theirs or theirs[k].shape != ours[k].shape]
        if mismatch:
            raise ConfigError(f"system.geometry.{name}: differs from the coarse run's ({mismatch[0]}); give it the coarse "
                              f"run's system.geometry.{name} settings, or set system.geometry_convert_inherit_texture=false")
        dst.load_state_dict(theirs)


@torch.no_grad()
def copy_mesh_geometry(target: TetrahedraSDFGrid, source: TetrahedraSDFGrid, where: str, inherit_texture: bool) -> ConversionReport:
    """Start ``target`` as the mesh stage's grid ``source``: its SDF and deformations (and colour field)."""
    for name in ("isosurface_resolution", "radius"):
        theirs, ours = getattr(source.cfg, name), getattr(target.cfg, name)
        if theirs != ours:
            raise ConfigError(f"system.geometry.{name}: {ours} differs from the source run's {theirs} ({where}); "
                              f"set system.geometry.{name}={theirs}")
    target.sdf.copy_(source.sdf)
    target.deformation.copy_(source.deformation)
    if inherit_texture:
        copy_texture(source, target, where)
    faces = target.isosurface().n_faces
    return ConversionReport(where, float("nan"), float("nan"), faces, inherit_texture and not target.cfg.geometry_only, copied_mesh=True)
