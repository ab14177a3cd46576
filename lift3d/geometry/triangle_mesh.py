"""A differentiable triangle mesh: normals, adjacency, and the smoothness losses of mesh refinement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor


@dataclass
class TriangleMesh:
    """Vertices (differentiable) and triangles, counter-clockwise seen from outside."""

    v_pos: Float[Tensor, "V 3"]
    """Vertex positions in world space."""
    t_idx: Int[Tensor, "F 3"]
    """Vertex indices of each triangle."""

    @property
    def n_faces(self) -> int:
        return int(self.t_idx.shape[0])

    def face_normals(self, unit: bool = True) -> Float[Tensor, "F 3"]:
        """Face normals; with ``unit=False``, cross products of twice the triangle's area."""
        p = self.v_pos[self.t_idx]
        n = torch.linalg.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
        return F.normalize(n, dim=-1) if unit else n

    def vertex_normals(self) -> Float[Tensor, "V 3"]:
        """Area-weighted mean of the normals of the faces around each vertex."""
        n = self.face_normals(unit=False)
        acc = torch.zeros_like(self.v_pos).index_add(0, self.t_idx.reshape(-1), n.repeat_interleave(3, dim=0))
        return F.normalize(acc, dim=-1)

    def edges(self) -> Int[Tensor, "E 2"]:
        """Undirected edges, each once (lower vertex index first)."""
        e = self.t_idx[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
        return torch.unique(e.sort(dim=1).values, dim=0)

    def face_pairs(self) -> Int[Tensor, "P 2"]:
        """Pairs of faces that share an edge (every interior edge of a manifold mesh gives one)."""
        e = self.t_idx[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2).sort(dim=1).values
        key = e[:, 0] * max(len(self.v_pos), 1) + e[:, 1]
        order = torch.argsort(key, stable=True)
        key_sorted = key[order]
        face = order // 3
        same = key_sorted[1:] == key_sorted[:-1]
        return torch.stack([face[:-1][same], face[1:][same]], dim=1)

    def normal_consistency(self) -> Tensor:
        """Mean of ``1 - cos`` between the normals of faces sharing an edge (0 for a flat sheet)."""
        pairs = self.face_pairs()
        if len(pairs) == 0:
            return self.v_pos.sum() * 0
        n = self.face_normals()
        return (1 - (n[pairs[:, 0]] * n[pairs[:, 1]]).sum(-1)).mean()

    def laplacian_smoothness(self) -> Tensor:
        """Mean squared distance of each vertex from the mean of its neighbours (uniform Laplacian)."""
        e = self.edges()
        if len(e) == 0:
            return self.v_pos.sum() * 0
        ij = torch.cat([e, e.flip(1)])
        n_v = len(self.v_pos)
        degree = torch.zeros(n_v, dtype=self.v_pos.dtype, device=self.v_pos.device).index_add(
            0, ij[:, 0], torch.ones(len(ij), dtype=self.v_pos.dtype, device=self.v_pos.device))
        neighbour_sum = torch.zeros_like(self.v_pos).index_add(0, ij[:, 0], self.v_pos[ij[:, 1]])
        used = degree > 0
        delta = neighbour_sum[used] / degree[used, None] - self.v_pos[used]
        return (delta**2).sum(-1).mean()

    def component_labels(self) -> Int[Tensor, "F"]:
        """Connected component of each face (faces sharing a vertex are connected)."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        n_v = len(self.v_pos)
        e = self.t_idx[:, [0, 1, 1, 2]].reshape(-1, 2).cpu().numpy()
        graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n_v, n_v))
        _, labels = connected_components(graph, directed=False)
        return torch.from_numpy(labels[self.t_idx[:, 0].cpu().numpy()]).to(self.t_idx.device)

    def remove_small_components(self, min_faces: float | int) -> "TriangleMesh":
        """Drop connected pieces with fewer faces than ``min_faces`` (a count, or below 1 a fraction
        of all faces); vertices keep their gradients."""
        if self.n_faces == 0:
            return self
        labels = self.component_labels()
        sizes = torch.bincount(labels)
        threshold = min_faces * self.n_faces if min_faces < 1 else min_faces
        keep = sizes[labels] >= threshold
        return self.select_faces(keep)

    def select_faces(self, keep: Tensor) -> "TriangleMesh":
        """The faces where ``keep`` is true, with unused vertices dropped."""
        faces = self.t_idx[keep]
        used, new_index = torch.unique(faces.reshape(-1), return_inverse=True)
        return TriangleMesh(self.v_pos[used], new_index.reshape(-1, 3))
