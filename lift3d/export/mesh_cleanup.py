"""Cleaning an extracted isosurface: drop small floating pieces, decimate to a face budget."""

from __future__ import annotations

import numpy as np

from lift3d.export.isosurface import Mesh


def remove_small_components(mesh: Mesh, min_fraction: float = 0.05) -> Mesh:
    """Keep connected components with at least ``min_fraction`` of the largest one's faces."""
    import trimesh

    if min_fraction <= 0 or len(mesh.faces) == 0:
        return mesh
    adjacency = trimesh.graph.face_adjacency(mesh.faces)
    labels = trimesh.graph.connected_component_labels(adjacency, node_count=len(mesh.faces))
    counts = np.bincount(labels)
    keep_faces = counts[labels] >= min_fraction * counts.max()
    return _subset(mesh, keep_faces)


def _subset(mesh: Mesh, keep_faces: np.ndarray) -> Mesh:
    faces = mesh.faces[keep_faces]
    used = np.unique(faces)
    remap = -np.ones(len(mesh.vertices), dtype=np.int64)
    remap[used] = np.arange(len(used))
    colors = mesh.colors[used] if mesh.colors is not None else None
    return Mesh(mesh.vertices[used], remap[faces], colors)


def smooth(mesh: Mesh, iterations: int = 5) -> Mesh:
    """Taubin smoothing (trimesh): removes marching-cubes staircase noise without shrinking the shape."""
    import trimesh

    if iterations <= 0 or len(mesh.faces) == 0:
        return mesh
    tm = trimesh.Trimesh(mesh.vertices.copy(), mesh.faces, process=False)
    trimesh.smoothing.filter_taubin(tm, iterations=iterations)
    return Mesh(np.asarray(tm.vertices, dtype=np.float32), mesh.faces, mesh.colors)


def decimate(mesh: Mesh, max_faces: int) -> Mesh:
    """Quadric-error decimation (Fast-Quadric-Mesh-Simplification) down to at most ``max_faces``."""
    import fast_simplification

    if max_faces <= 0 or len(mesh.faces) <= max_faces:
        return mesh
    reduction = 1.0 - max_faces / len(mesh.faces)
    verts, faces = fast_simplification.simplify(mesh.vertices.astype(np.float32), mesh.faces.astype(np.int32), target_reduction=reduction)
    return Mesh(verts.astype(np.float32), faces.astype(np.int64))
