"""A turntable of any mesh (GLB/OBJ/PLY, textured or vertex-coloured) rendered like a lift3d test turntable.

``lift3d eval score`` uses it to put meshes from other tools in the same table: the mesh is
rasterized by lift3d's mesh rasterizer from the preset's test cameras and shaded like the
``diffuse-with-point-light`` material (``albedo * (0.35 + 0.65 max(0, n.l))``, the
evaluation light of each camera, white background), so its frames are scored exactly as a
run's. Faces are lit from whichever side faces the camera (meshes from other tools are often
not consistently wound).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lift3d.data.batch import CameraBatch
from lift3d.errors import InputError
from lift3d.eval.turntable import Turntable
from lift3d.priors.world import conventions as conv
from lift3d.renderers.rasterizer import MeshRasterizer, interpolate
from lift3d.utils.axes import Y_UP_TO_Z_UP, file_up_axis, homogeneous


@dataclass
class ColouredMesh:
    """A mesh with either a texture (uvs + image) or per-vertex colours, in lift3d's world frame."""

    mesh: object  # trimesh.Trimesh, for the geometric metrics
    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray | None = None
    texture: np.ndarray | None = None
    vertex_colours: np.ndarray | None = None


def _texture_image(material) -> np.ndarray | None:
    image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    if image is None:
        return None
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    factor = getattr(material, "baseColorFactor", None)
    if factor is not None:
        arr = arr * (np.asarray(factor[:3], dtype=np.float32) / 255.0 if np.max(factor) > 1 else np.asarray(factor[:3], dtype=np.float32))
    return arr


def load_coloured_mesh(path: str | Path, up: str = "auto") -> ColouredMesh:
    """Read a mesh file with trimesh into lift3d's +z-up world.

    ``up="y"`` rotates a +y-up file into it, ``up="z"`` leaves it as it is; ``"auto"`` (default) reads
    GLB/glTF files as +y up (the glTF specification, and how lift3d writes them) and others as +z up.
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise InputError(f"mesh file {str(path)!r} not found; pass an existing GLB, OBJ or PLY file")
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many kinds for unreadable files
        raise InputError(f"{path} is not a mesh trimesh can read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}); pass a GLB, OBJ or PLY file with faces") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(getattr(mesh, "faces", [])) == 0:
        raise InputError(f"{path} holds no triangles; pass a GLB, OBJ or PLY file with faces")
    if up == "auto":
        up = file_up_axis(path)
    if up == "y":
        mesh.apply_transform(homogeneous(Y_UP_TO_Z_UP))
    elif up != "z":
        raise InputError(f"--up {up!r} is not 'auto', 'z' or 'y'")
    out = ColouredMesh(mesh, np.asarray(mesh.vertices, dtype=np.float32), np.asarray(mesh.faces, dtype=np.int64))
    visual = mesh.visual
    if visual.kind == "texture" and getattr(visual, "uv", None) is not None:
        texture = _texture_image(visual.material)
        if texture is not None:
            out.uvs, out.texture = np.asarray(visual.uv, dtype=np.float32), texture
            return out
    colours = np.asarray(visual.to_color().vertex_colors if visual.kind == "texture" else visual.vertex_colors, dtype=np.float32)
    out.vertex_colours = colours[:, :3] / 255.0
    return out


def concat_batches(batches: list[CameraBatch]) -> CameraBatch:
    return CameraBatch(**{f.name: torch.cat([getattr(b, f.name) for b in batches]) for f in fields(CameraBatch)})


@torch.no_grad()
def render_turntable(mesh: ColouredMesh, cameras: list[CameraBatch], background: float = 1.0, chunk: int = 8) -> Turntable:
    """Shaded renders and coverage of ``mesh`` from every camera, as a :class:`Turntable`."""
    import trimesh

    r = MeshRasterizer()
    v = torch.from_numpy(mesh.vertices).float()
    f = torch.from_numpy(mesh.faces).long()
    normals = torch.from_numpy(np.asarray(trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).vertex_normals, dtype=np.float32))
    batch = concat_batches(cameras)
    rgbs, masks = [], []
    for s in range(0, batch.size, chunk):
        sl = slice(s, s + chunk)
        mvp, c2w, light = batch.mvp[sl], batch.c2w[sl], batch.light_position[sl]
        clip = torch.cat([v, torch.ones(len(v), 1)], -1) @ mvp.transpose(1, 2)
        rast = r.rasterize(clip, f, (batch.height, batch.width))
        if mesh.texture is not None:
            uv = interpolate(torch.from_numpy(mesh.uvs), rast, f)
            grid = torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], -1)
            tex = torch.from_numpy(np.ascontiguousarray(mesh.texture)).permute(2, 0, 1)[None].expand(len(uv), -1, -1, -1)
            albedo = F.grid_sample(tex, grid, mode="bilinear", padding_mode="border", align_corners=False).permute(0, 2, 3, 1)
        else:
            albedo = interpolate(torch.from_numpy(mesh.vertex_colours), rast, f)
        p = interpolate(v, rast, f)
        n = F.normalize(interpolate(normals, rast, f), dim=-1)
        to_cam = c2w[:, None, None, :3, 3] - p
        n = torch.where(((n * to_cam).sum(-1, keepdim=True) < 0), -n, n)
        lambert = (n * F.normalize(light[:, None, None, :] - p, dim=-1)).sum(-1, keepdim=True).clamp(min=0)
        rgb = (albedo * (conv.AMBIENT + conv.DIFFUSE * lambert)).clamp(0, 1)
        rgbs.append(torch.where(rast.mask[..., None], rgb, torch.full_like(rgb, background)))
        masks.append(rast.mask)
    return Turntable(
        rgb=torch.cat(rgbs).permute(0, 3, 1, 2), opacity=torch.cat(masks).float(), elevation=batch.elevation,
        azimuth=batch.azimuth, distance=batch.distance, fovy=batch.fovy, light_position=batch.light_position,
    )
