"""``--export``: isosurface -> cleanup -> decimation -> UV unwrap -> texture bake -> writers.

Files go to ``save/it<N>-export/`` of the trial: ``model.obj`` + ``model.mtl`` + ``texture.png``,
``model.glb``, ``model.ply`` (as ``export.formats`` asks). Every file is written atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lift3d.errors import RunError
from lift3d.export.isosurface import Mesh, extract_isosurface, vertex_albedo
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
    timings: dict[str, float] = field(default_factory=dict)


def textured_mesh(system, cfg) -> TexturedMesh:
    """Build the textured mesh of a trained system under export settings ``cfg``."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    mesh = extract_isosurface(system.geometry, cfg.resolution, cfg.threshold, cfg.coarse_to_fine)
    timings["isosurface"] = time.perf_counter() - t
    t = time.perf_counter()
    mesh = remove_small_components(mesh, cfg.min_component_fraction)
    mesh = decimate(smooth(mesh, cfg.smooth_iterations), cfg.max_faces)
    timings["cleanup, smoothing, decimation"] = time.perf_counter() - t
    t = time.perf_counter()
    mesh, uvs = unwrap(mesh)
    timings["uv unwrap"] = time.perf_counter() - t
    t = time.perf_counter()
    texture, _ = bake_texture(mesh.vertices, mesh.faces, uvs, albedo_function(system), cfg.texture_size, cfg.texture_dilation)
    timings["texture bake"] = time.perf_counter() - t
    mesh.colors = vertex_albedo(system.geometry, system.material, mesh.vertices)
    return TexturedMesh(mesh, uvs, texture, timings)


def albedo_function(system):
    @torch.no_grad()
    def albedo_at(points: torch.Tensor) -> torch.Tensor:
        device = next(system.geometry.parameters()).device
        out = [system.material.albedo(system.geometry(p.to(device)).features).cpu() for p in points.split(65536)]
        return torch.cat(out)

    return albedo_at


def export_system(system, save_dir: Path, cfg, cameras=None, fps: int = 30) -> list[Path]:
    """Extract, texture and write the mesh of ``system``; returns the written files.

    With ``cameras`` (an iterable of ``CameraBatch``, e.g. the test turntable), the textured mesh
    is also rendered by the rasterizer from each to ``it<N>-export.mp4`` beside the NeRF's video.
    """
    system.eval()
    result = textured_mesh(system, cfg)
    print(f"mesh: {len(result.mesh.faces):,} faces, {cfg.texture_size}² texture; "
          + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))
    out = Path(save_dir) / f"it{system.true_global_step}-export"
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        if "obj" in cfg.formats:
            paths += write_obj(result.mesh, result.uvs, result.texture, out / "model.obj")
        if "glb" in cfg.formats:
            paths += write_glb(result.mesh, result.uvs, result.texture, out / "model.glb")
        if "ply" in cfg.formats:
            paths += write_ply(result.mesh, out / "model.ply")
        if cameras is not None:
            paths.append(export_turntable(result, cameras, Path(save_dir) / f"it{system.true_global_step}-export.mp4", fps))
    except OSError as exc:
        raise RunError(f"cannot write into {out}: {exc.strerror}; make the trial's save/ folder writable") from exc
    return paths


def export_turntable(result: TexturedMesh, cameras, path: Path, fps: int = 30) -> Path:
    """The textured mesh rendered (albedo, white background) from each camera batch, as an mp4."""
    from lift3d.export.mesh_render import render_textured_mesh
    from lift3d.utils.images import to_uint8, write_video

    frames = []
    for batch in cameras:
        rgb, _ = render_textured_mesh(result.mesh.vertices, result.mesh.faces, result.uvs, result.texture, batch)
        frames += [to_uint8(img) for img in rgb]
    write_video(path, frames, fps=fps)
    return path
