"""``--export``: a vertex-coloured mesh of a trained geometry, written atomically into ``save/``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lift3d.errors import RunError
from lift3d.export.isosurface import Mesh, extract_isosurface, vertex_albedo
from lift3d.utils.io import atomic_path


def write_obj_with_vertex_colors(mesh: Mesh, path: Path) -> None:
    lines = ["# lift3d export: vertex colours after each position"]
    colors = mesh.colors if mesh.colors is not None else np.ones_like(mesh.vertices)
    lines += [f"v {x:.6f} {y:.6f} {z:.6f} {r:.4f} {g:.4f} {b:.4f}" for (x, y, z), (r, g, b) in zip(mesh.vertices, colors)]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh.faces]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def export_system(system, save_dir: Path, resolution: int = 128, threshold: float | None = None) -> list[Path]:
    """Extract, colour and write the mesh of ``system``; returns the written files."""
    system.eval()
    mesh = extract_isosurface(system.geometry, resolution, threshold)
    mesh.colors = vertex_albedo(system.geometry, system.material, mesh.vertices)
    out = Path(save_dir) / f"it{system.true_global_step}-export" / "model.obj"
    try:
        write_obj_with_vertex_colors(mesh, out)
    except OSError as exc:
        raise RunError(f"cannot write {out}: {exc.strerror}; make the trial's save/ folder writable") from exc
    return [out]
