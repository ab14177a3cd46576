"""A tetrahedral grid of the scene box at any resolution, made here (no downloaded tet files).

Every cube of a regular ``resolution^3`` lattice is split into six tetrahedra around its main
diagonal (the Kuhn / Freudenthal triangulation). Neighbouring cubes split their shared face
along the same diagonal, so the tetrahedra form a conforming mesh, and marching tetrahedra on
it gives a watertight surface. Every tetrahedron is positively oriented
(``det[v1 - v0, v2 - v0, v3 - v0] > 0``), which the marching-tetrahedra table relies on.
"""

from __future__ import annotations

from itertools import permutations

import torch
from jaxtyping import Float, Int
from torch import Tensor


def _template() -> Int[Tensor, "6 4 3"]:
    """The six tetrahedra of the unit cube as corner offsets, each positively oriented."""
    tets = []
    for order in permutations(range(3)):
        path = [torch.zeros(3, dtype=torch.long)]
        for axis in order:
            step = path[-1].clone()
            step[axis] = 1
            path.append(step)
        tet = torch.stack(path)
        e = (tet[1:] - tet[0]).double()
        if torch.linalg.det(e) < 0:
            tet = tet[[0, 1, 3, 2]]
        tets.append(tet)
    return torch.stack(tets)


_TEMPLATE = _template()  # made once, on the CPU (a grid built on the meta device reuses it)


def tetrahedral_grid(resolution: int, radius: float = 1.0) -> tuple[Float[Tensor, "V 3"], Int[Tensor, "T 4"]]:
    """Vertices of the ``(resolution + 1)^3`` lattice over ``[-radius, radius]^3`` and the
    ``6 * resolution^3`` tetrahedra over them (vertex ``(i, j, k)`` has index ``(i*(n+1) + j)*(n+1) + k``)."""
    if resolution < 1:
        raise ValueError(f"a tetrahedral grid needs resolution >= 1, got {resolution}")
    n = resolution
    t = torch.linspace(-radius, radius, n + 1)
    vertices = torch.stack(torch.meshgrid(t, t, t, indexing="ij"), dim=-1).reshape(-1, 3)
    base = torch.stack(torch.meshgrid(*(torch.arange(n),) * 3, indexing="ij"), dim=-1).reshape(-1, 1, 1, 3)
    corner = base + _TEMPLATE.to(base.device)[None]  # (n^3, 6, 4, 3)
    index = (corner[..., 0] * (n + 1) + corner[..., 1]) * (n + 1) + corner[..., 2]
    return vertices, index.reshape(-1, 4)
