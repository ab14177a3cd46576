"""Mesh writers: OBJ + MTL + PNG texture, GLB with a PBR base-colour texture, vertex-coloured PLY.

OBJ and PLY keep lift3d's +z-up coordinates (as threestudio's exports do); GLB is written +y up as
the glTF specification asks.

Every file is written to a temporary name beside its target and renamed when complete.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lift3d.export.isosurface import Mesh
from lift3d.utils.axes import Z_UP_TO_Y_UP
from lift3d.utils.io import atomic_path, atomic_write_text, write_png


def write_obj(mesh: Mesh, uvs: np.ndarray, texture: np.ndarray, path: Path) -> list[Path]:
    """``model.obj`` with ``model.mtl`` and ``texture.png`` beside it (v = 0 at the image bottom)."""
    path = Path(path)
    mtl, png = path.with_suffix(".mtl"), path.parent / "texture.png"
    write_png(png, texture)
    atomic_write_text(mtl, f"newmtl material0\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nillum 1\nmap_Kd {png.name}\n")
    lines = [f"# lift3d export\nmtllib {mtl.name}\nusemtl material0"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in mesh.vertices]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in uvs]
    lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in mesh.faces + 1]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return [path, mtl, png]


def _trimesh(mesh: Mesh, uvs: np.ndarray | None = None, texture: np.ndarray | None = None, y_up: bool = False):
    import trimesh
    from PIL import Image

    vertices = mesh.vertices @ Z_UP_TO_Y_UP.T if y_up else mesh.vertices
    if texture is None:
        return trimesh.Trimesh(vertices, mesh.faces, vertex_colors=mesh.colors, process=False)
    image = Image.fromarray((np.clip(texture, 0, 1) * 255).round().astype(np.uint8))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=image, metallicFactor=0.0, roughnessFactor=1.0)
    visual = trimesh.visual.TextureVisuals(uv=uvs, material=material)
    return trimesh.Trimesh(vertices, mesh.faces, visual=visual, process=False)


def write_glb(mesh: Mesh, uvs: np.ndarray, texture: np.ndarray, path: Path) -> list[Path]:
    """Binary glTF 2.0 with the texture as the PBR base colour (metallic 0, roughness 1).

    glTF is +y up, so lift3d's +z-up vertices are rotated on the way out; viewers then show the
    object standing, and ``lift3d eval score`` rotates them back when it reads a GLB.
    """
    data = _trimesh(mesh, uvs, texture, y_up=True).export(file_type="glb")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return [Path(path)]


def write_ply(mesh: Mesh, path: Path) -> list[Path]:
    """Vertex-coloured PLY (binary)."""
    data = _trimesh(mesh).export(file_type="ply")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return [Path(path)]
