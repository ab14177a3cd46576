"""``--export``: surface level -> isosurface -> cleanup -> decimation -> UV unwrap -> texture bake -> writers.

Files go to ``save/it<N>-export/`` of the trial: ``model.obj`` + ``model.mtl`` + ``texture.png``,
``model.glb``, ``model.ply`` (as ``export.formats`` asks), and ``export.json``: the density level
and how it was chosen, and how well the export's silhouettes match the NeRF's over the test
cameras (unaligned IoU). Every file is written atomically.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from lift3d.errors import RunError
from lift3d.geometry.base import BaseExplicitGeometry
from lift3d.export.isosurface import Mesh, auto_threshold, marching_cubes_mesh, occupied_bbox, scene_box, vertex_albedo
from lift3d.export.surface_level import SurfaceLevel, silhouette_matched_level
from lift3d.export.mesh_cleanup import decimate, remove_small_components, smooth
from lift3d.export.texture_bake import bake_texture
from lift3d.export.uv_unwrap import unwrap
from lift3d.export.writers import write_glb, write_obj, write_ply


@dataclass
class TexturedMesh:
    """An exported mesh: geometry with split UV seams, texture coordinates and its baked texture."""

    mesh: Mesh
    uvs: np.ndarray
    texture: np.ndarray
    surface: SurfaceLevel
    """The density level of the surface and how it was chosen."""
    timings: dict[str, float] = field(default_factory=dict)


@torch.no_grad()
def nerf_opacity(system, cameras: list) -> list[torch.Tensor]:
    """The NeRF's (B, H, W) opacity from each camera batch."""
    system.renderer.eval()
    return [system.renderer(batch).opacity[..., 0].cpu() for batch in cameras]


def evenly_spaced(items: list, n: int) -> list:
    if n <= 0 or len(items) <= n:
        return list(items)
    return [items[round(i * len(items) / n)] for i in range(n)]


def choose_surface(system, cfg, cameras: list | None, opacity: list[torch.Tensor] | None) -> tuple[Mesh, SurfaceLevel]:
    """The isosurface mesh at the level ``cfg`` asks for (a number, or the automatic rule); a mesh
    geometry (DMTet) gives its own mesh, which is what it renders."""
    geometry = system.geometry
    if isinstance(geometry, BaseExplicitGeometry):
        with torch.no_grad():
            tri = geometry.isosurface()
        if tri.n_faces == 0:
            raise RunError("the mesh geometry has no surface (its SDF is positive everywhere); train longer or convert from a coarse run")
        mesh = Mesh(tri.v_pos.cpu().numpy().astype(np.float32), tri.t_idx.cpu().numpy().astype(np.int64))
        return mesh, SurfaceLevel(0.0, float("nan"), "mesh")
    lo, hi = scene_box(geometry)
    density = geometry.density_grid(cfg.resolution).cpu()
    if cfg.threshold is not None:
        surface = SurfaceLevel(float(cfg.threshold), float("nan"), "user")
    elif cfg.threshold_rule == "silhouettes" and cameras:
        views = evenly_spaced(list(range(len(cameras))), cfg.silhouette_views)
        surface = silhouette_matched_level(density, lo, hi, [cameras[i] for i in views], [opacity[i] for i in views])
    else:
        surface = SurfaceLevel(auto_threshold(density.numpy()), float("nan"), "otsu")
    if cfg.coarse_to_fine:
        box = occupied_bbox(geometry, max(cfg.resolution // 4, 16), surface.level)
        if box is not None:
            lo, hi = box
            density = geometry.density_grid(cfg.resolution, bbox=(lo, hi)).cpu()
    return marching_cubes_mesh(density.numpy(), surface.level, lo, hi), surface


def textured_mesh(system, cfg, cameras: list | None = None, opacity: list[torch.Tensor] | None = None) -> TexturedMesh:
    """Build the textured mesh of a trained system under export settings ``cfg``.

    ``cameras`` (CameraBatch list, e.g. the test turntable) let the ``silhouettes`` rule choose
    the level; ``opacity`` is the NeRF's opacity from them (rendered here when not given).
    """
    timings: dict[str, float] = {}
    if cameras and opacity is None and cfg.threshold is None and cfg.threshold_rule == "silhouettes":
        t = time.perf_counter()
        opacity = nerf_opacity(system, evenly_spaced(cameras, cfg.silhouette_views))
        cameras = evenly_spaced(cameras, cfg.silhouette_views)
        timings["nerf silhouettes"] = time.perf_counter() - t
    t = time.perf_counter()
    mesh, surface = choose_surface(system, cfg, cameras, opacity)
    timings["isosurface"] = time.perf_counter() - t
    t = time.perf_counter()
    mesh = remove_small_components(mesh, cfg.min_component_fraction)
    if surface.rule != "mesh":  # a mesh geometry's surface is exported as it renders: no smoothing
        mesh = smooth(mesh, cfg.smooth_iterations)
    mesh = decimate(mesh, cfg.max_faces)
    timings["cleanup, smoothing, decimation"] = time.perf_counter() - t
    t = time.perf_counter()
    mesh, uvs = unwrap(mesh)
    timings["uv unwrap"] = time.perf_counter() - t
    t = time.perf_counter()
    texture, _ = bake_texture(mesh.vertices, mesh.faces, uvs, albedo_function(system), cfg.texture_size, cfg.texture_dilation)
    timings["texture bake"] = time.perf_counter() - t
    mesh.colors = vertex_albedo(system.geometry, system.material, mesh.vertices)
    return TexturedMesh(mesh, uvs, texture, surface, timings)


def albedo_function(system):
    @torch.no_grad()
    def albedo_at(points: torch.Tensor) -> torch.Tensor:
        device = next(system.geometry.parameters()).device
        out = [system.material.albedo(system.geometry.features_at(p.to(device))).cpu() for p in points.split(65536)]
        return torch.cat(out)

    return albedo_at


def export_system(system, save_dir: Path, cfg, cameras=None, fps: int = 30) -> list[Path]:
    """Extract, texture and write the mesh of ``system``; returns the written files.

    With ``cameras`` (an iterable of ``CameraBatch``, e.g. the test turntable), the level is chosen
    from the NeRF's silhouettes, the textured mesh is rendered by the rasterizer from each camera
    to ``it<N>-export.mp4`` beside the NeRF's video, and its silhouettes are scored against the
    NeRF's in ``export.json`` (with a warning below ``cfg.warn_iou``).
    """
    system.eval()
    cameras = list(cameras) if cameras is not None else None
    t = time.perf_counter()
    opacity = nerf_opacity(system, cameras) if cameras else None
    nerf_seconds = time.perf_counter() - t
    result = textured_mesh(system, cfg, cameras, opacity)
    if cameras:
        result.timings = {"nerf renders": nerf_seconds, **result.timings}
    s = result.surface
    how = {"user": "export.threshold", "otsu": "Otsu's method on log density",
           "silhouettes": f"silhouettes of {min(cfg.silhouette_views, len(cameras or []))} test views, level-set IoU {s.silhouette_iou:.3f}"}.get(s.rule)
    print(f"surface: density level {s.level:.4g} ({how})" if how else "surface: the geometry's own mesh (SDF zero level)")
    if s.rule == "otsu" and cfg.threshold_rule == "silhouettes":
        print("note: no test cameras to compare silhouettes with; the level came from Otsu's method")
    print(f"mesh: {len(result.mesh.faces):,} faces, {cfg.texture_size}² texture; "
          + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))
    out = Path(save_dir) / f"it{system.true_global_step}-export"
    report = {"surface": asdict(s), "faces": int(len(result.mesh.faces)), "vertices": int(len(result.mesh.vertices)),
              "timings_seconds": {k: round(v, 3) for k, v in result.timings.items()}}
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        if "obj" in cfg.formats:
            paths += write_obj(result.mesh, result.uvs, result.texture, out / "model.obj")
        if "glb" in cfg.formats:
            paths += write_glb(result.mesh, result.uvs, result.texture, out / "model.glb")
        if "ply" in cfg.formats:
            paths += write_ply(result.mesh, out / "model.ply")
        if cameras:
            video, ious = export_turntable(result, cameras, Path(save_dir) / f"it{system.true_global_step}-export.mp4", fps, opacity)
            paths.append(video)
            report["silhouette_iou_vs_nerf"] = {"mean": float(np.mean(ious)), "min": float(np.min(ious)), "views": len(ious),
                                                "warn_below": cfg.warn_iou}
            print(f"export vs NeRF silhouettes over {len(ious)} test views (unaligned): IoU {np.mean(ious):.3f} mean, {np.min(ious):.3f} worst")
            if np.mean(ious) < cfg.warn_iou:
                print(f"warning: the export's silhouettes match the NeRF's poorly (IoU {np.mean(ious):.3f} < {cfg.warn_iou}); "
                      "try export.threshold=<density> (see export.json) or a finer export.resolution")
        from lift3d.utils.io import atomic_write_text

        atomic_write_text(out / "export.json", json.dumps(report, indent=2) + "\n")
        paths.append(out / "export.json")
    except OSError as exc:
        raise RunError(f"cannot write into {out}: {exc.strerror}; make the trial's save/ folder writable") from exc
    return paths


def silhouette_iou(mask: torch.Tensor, opacity: torch.Tensor) -> float:
    """Unaligned IoU of a coverage mask with ``opacity > 0.5`` (1.0 when both are empty)."""
    nerf = opacity > 0.5
    union = int((mask | nerf).sum())
    return float((mask & nerf).sum()) / union if union else 1.0


def export_turntable(result: TexturedMesh, cameras, path: Path, fps: int = 30, opacity: list | None = None) -> tuple[Path, list[float]]:
    """The textured mesh rendered (albedo, white background) from each camera batch, as an mp4;
    with the NeRF's ``opacity`` per camera, also the per-view silhouette IoU against it."""
    from lift3d.export.mesh_render import render_textured_mesh
    from lift3d.utils.images import to_uint8, write_video

    frames, ious = [], []
    for i, batch in enumerate(cameras):
        rgb, mask = render_textured_mesh(result.mesh.vertices, result.mesh.faces, result.uvs, result.texture, batch)
        frames += [to_uint8(img) for img in rgb]
        if opacity is not None:
            ious += [silhouette_iou(m, o) for m, o in zip(mask, opacity[i])]
    write_video(path, frames, fps=fps)
    return path, ious
