"""Marching tetrahedra in PyTorch: the zero level set of an SDF on a tetrahedral grid.

Surface vertices sit on the grid edges whose ends have opposite signs, at the zero of the
linear interpolation of the SDF along the edge; they are differentiable with respect to the SDF
values and the grid vertex positions (so DMTet's deformations and SDF both receive gradients).
Each crossed edge gives one vertex shared by every tetrahedron around it, so the mesh is
watertight wherever the surface does not reach the grid's boundary. Triangles face outward
(towards positive SDF: negative inside) on positively oriented tetrahedra.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
"""The six edges of a tetrahedron, as pairs of its corners."""


def _case_table() -> tuple[Tensor, Tensor]:
    """For each of the 16 inside/outside patterns of a tetrahedron's corners (bit v = corner v is
    inside): up to two triangles as triples of edge slots, and how many triangles there are.

    Built here rather than typed in: the crossed edges of a pattern are listed, a quad (two
    corners inside) is ordered around its cycle and split in two, and each triangle is turned to
    face from the inside corners to the outside ones on a reference positively oriented tetrahedron.
    Orientation relative to that direction does not change under orientation-preserving affine
    maps or where along its edges a vertex sits, so the table holds for every grid tetrahedron.
    """
    ref = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    edge_of = {frozenset(e): i for i, e in enumerate(EDGES)}
    table = torch.zeros(16, 2, 3, dtype=torch.long)
    count = torch.zeros(16, dtype=torch.long)
    for case in range(16):
        inside = [(case >> v) & 1 for v in range(4)]
        ins = [v for v in range(4) if inside[v]]
        outs = [v for v in range(4) if not inside[v]]
        if len(ins) in (0, 4):
            continue
        if len(ins) == 1 or len(outs) == 1:
            tris = [[i for i, (a, b) in enumerate(EDGES) if inside[a] != inside[b]]]
        else:
            (a, b), (c, d) = ins, outs
            cycle = [edge_of[frozenset(e)] for e in ((a, c), (a, d), (b, d), (b, c))]
            tris = [[cycle[0], cycle[1], cycle[2]], [cycle[0], cycle[2], cycle[3]]]
        outward = ref[outs].mean(0) - ref[ins].mean(0)
        for k, tri in enumerate(tris):
            m = torch.stack([(ref[EDGES[e][0]] + ref[EDGES[e][1]]) / 2 for e in tri])
            if torch.dot(torch.linalg.cross(m[1] - m[0], m[2] - m[0]), outward) < 0:
                tri = [tri[0], tri[2], tri[1]]
            table[case, k] = torch.tensor(tri)
        count[case] = len(tris)
    return table, count


_TABLE, _COUNT = _case_table()


def marching_tetrahedra(
    positions: Float[Tensor, "V 3"], tets: Int[Tensor, "T 4"], sdf: Float[Tensor, "V"]
) -> tuple[Float[Tensor, "M 3"], Int[Tensor, "F 3"]]:
    """Surface vertices and outward-facing triangles of ``{sdf < 0}`` (inside is negative)."""
    device = positions.device
    with torch.no_grad():
        inside = sdf < 0
        occ = inside[tets]  # (T, 4)
        n_in = occ.sum(1)
        crossed = (n_in > 0) & (n_in < 4)
        tets = tets[crossed]
        if len(tets) == 0:
            return positions.new_zeros((0, 3)), torch.zeros((0, 3), dtype=torch.long, device=device)
        case = (occ[crossed].long() * torch.tensor([1, 2, 4, 8], device=device)).sum(1)
        ends = tets[:, torch.tensor(EDGES, device=device)]  # (Tc, 6, 2)
        lo, hi = ends.min(-1).values, ends.max(-1).values
        key = lo * positions.shape[0] + hi  # an undirected edge as one integer
        unique_key, inverse = torch.unique(key.reshape(-1), return_inverse=True)
        a, b = unique_key // positions.shape[0], unique_key % positions.shape[0]
        cut = inside[a] != inside[b]
        vertex_of_edge = torch.full((len(unique_key),), -1, dtype=torch.long, device=device)
        vertex_of_edge[cut] = torch.arange(int(cut.sum()), device=device)
        slots = vertex_of_edge[inverse].reshape(-1, 6)  # (Tc, 6): surface vertex on each edge, or -1
        table, count = _TABLE.to(device)[case], _COUNT.to(device)[case]
        first = slots.gather(1, table[:, 0])
        second = slots[count == 2].gather(1, table[count == 2, 1])
        faces = torch.cat([first, second])
        a, b = a[cut], b[cut]
    sa, sb = sdf[a], sdf[b]
    w = (sa / (sa - sb))[:, None]  # where the linear interpolation of the SDF crosses zero
    vertices = positions[a] + w * (positions[b] - positions[a])
    return vertices, faces
