"""Bring a mesh from another tool into the bundled world's frame before it is scored.

Meshes from closed methods and image-to-3D services arrive at their own size and placement
(a unit box, a mesh resting on its base, a mesh 100 units across). ``lift3d eval score``
aligns a mesh first, by a uniform scale and a translation of its axis-aligned bounding box:

* ``centre`` (what ``auto`` picks for a text prompt, unless the mesh already sits in the world's
  frame: box centre within 0.1 of the origin, largest side 0.8-1.3, as a lift3d export does; such
  a mesh is left as it is): the box's centre to the world origin and its largest
  side to 1.1 units, the median size of the world's objects (0.84-1.24). The prompt plays no part, so a
  sphere is not shrunk to a cube's size when scored as "a cube"; the evaluation classifier is
  trained with scale and shift augmentation (0.7-1.3x), so the remaining size differences do not
  decide what it reads. The silhouette IoU, Chamfer distance and volume IoU align shapes
  themselves (centre and scale), so this step is for the classifier's score.
* ``truth`` (``auto`` for an image-to-3D mesh, ``--image``): the box's centre and largest side to
  the true object's. Novel-view PSNR compares renders pixel by pixel with the truth's views, so
  the mesh must sit where the input camera saw the object; a method that recovers the input's
  framing exactly would put it there.
* ``none``: the mesh is scored where it is (a lift3d export is already in the world frame).

Orientation is not searched: the mesh must be +z up (or a +y-up GLB, ``--up``) and face the
world's front, +x (azimuth 0, where the reference camera of the bundled image examples stands);
``yaw_deg`` turns it about the up axis first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from lift3d.eval.mesh_turntable import ColouredMesh

Alignment = Literal["auto", "centre", "truth", "none"]

WORLD_SIDE = 1.1
"""Largest bounding-box side of a mesh after ``centre`` alignment (world units): the median of the
world's objects (sphere and house 1.1; all between the cube's 0.84 and the torus' 1.24)."""

WORLD_SIDE_RANGE = (0.8, 1.3)
"""Largest sides of meshes that ``auto`` leaves at their size (the world's objects: 0.84-1.24)."""


@dataclass(frozen=True)
class AlignmentReport:
    """What was done to the mesh: points p became ``scale * (R p) + offset``."""

    mode: str
    scale: float
    offset: tuple[float, float, float]
    yaw_deg: float

    def to_json(self) -> dict:
        return {"mode": self.mode, "scale": self.scale, "offset": list(self.offset), "yaw_deg": self.yaw_deg}


def _yaw(vertices: np.ndarray, yaw_deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=np.float64)
    return vertices @ rot.T


def box_of(vertices: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and largest side of the axis-aligned bounding box of (V, 3) points."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    return (lo + hi) / 2, float((hi - lo).max())


def in_world_frame(vertices: np.ndarray) -> bool:
    """Whether a mesh already sits as the world's objects do: its box centre within 0.1 of the origin
    and its largest side within the world's range (0.8-1.3; a lift3d export, a world-sized mesh)."""
    centre, side = box_of(vertices)
    return bool(np.linalg.norm(centre) <= 0.1 and WORLD_SIDE_RANGE[0] <= side <= WORLD_SIDE_RANGE[1])


def align_mesh(mesh: ColouredMesh, kind: str | None, mode: Alignment = "auto", yaw_deg: float = 0.0,
               image_to_3d: bool = False) -> tuple[ColouredMesh, AlignmentReport]:
    """The mesh turned by ``yaw_deg``, then scaled and moved by ``mode`` (``auto``: ``truth`` for an
    image-to-3D mesh, else ``none`` for a mesh already in the world's frame and ``centre`` for any
    other); ``kind`` names the true object (needed by ``truth``)."""
    from lift3d.errors import InputError

    v = _yaw(np.asarray(mesh.vertices, dtype=np.float64), yaw_deg)
    if mode == "auto":
        mode = "truth" if image_to_3d else ("none" if in_world_frame(v) else "centre")
    if mode not in ("centre", "truth", "none"):
        raise InputError(f"--align {mode!r} is not 'auto', 'centre', 'truth' or 'none'")
    if mode == "truth" and kind is None:
        raise InputError("--align truth needs a bundled-world object to align to (--image of an example, or a prompt like "
                         "\"a green cube\"); use --align centre")
    scale, offset = 1.0, np.zeros(3)
    if mode != "none":
        centre, side = box_of(v)
        if side <= 0:
            raise InputError("the mesh is flat or a single point (its bounding box has no extent); it cannot be aligned")
        if mode == "truth":
            from lift3d.priors.world.ground_truth import ground_truth_mesh

            target_centre, target_side = box_of(np.asarray(ground_truth_mesh(kind).vertices))
        else:
            target_centre, target_side = np.zeros(3), WORLD_SIDE
        scale = target_side / side
        offset = target_centre - scale * centre
    v = scale * v + offset
    moved = mesh.mesh.copy()
    moved.vertices = v
    aligned = replace(mesh, mesh=moved, vertices=v.astype(np.float32))
    return aligned, AlignmentReport(mode, float(scale), tuple(float(x) for x in offset), float(yaw_deg))
