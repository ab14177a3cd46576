"""Occupancy grid: which cells of the scene box hold density, to skip empty space while marching."""

from __future__ import annotations

import torch
import torch.nn as nn
from jaxtyping import Bool, Float
from torch import Tensor


class OccupancyGrid(nn.Module):
    """A ``resolution^3`` grid over ``[-radius, radius]^3`` with an EMA of the max density per cell.

    A cell is occupied when its density reaches ``min(threshold, mean density over the grid)``
    (as nerfacc does). The mean bound means the grid can never switch every cell off: a field
    whose densities are all below the nominal threshold (early training, no density bias)
    keeps its denser-than-average cells, so samples and gradients keep flowing and the grid
    fills again as the field grows.
    """

    def __init__(self, radius: float, resolution: int, threshold: float, decay: float) -> None:
        super().__init__()
        self.radius, self.resolution, self.threshold, self.decay = radius, resolution, threshold, decay
        # before the first update every cell counts as occupied
        self.register_buffer("density", torch.full((resolution,) * 3, float("inf")))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self._occupied: Tensor | None = None
        self._box: tuple | None = None  # occupied_box(), () when no cell is occupied
        self.register_load_state_dict_pre_hook(lambda *args, **kwargs: self._invalidate())

    def _invalidate(self) -> None:
        self._occupied = None
        self._box = None

    def _apply(self, fn, recurse=True):
        self._invalidate()
        return super()._apply(fn, recurse)

    @property
    def occupied(self) -> Bool[Tensor, "R R R"]:
        """Cells above the threshold, dilated by one cell.

        One jittered sample per cell can miss a cell that the surface only clips; the
        dilation keeps such cells, so skipping never changes a render by more than the
        density the grid never saw.
        """
        if self._occupied is None:
            core = (self.density >= self.effective_threshold()).float()[None, None]
            self._occupied = torch.nn.functional.max_pool3d(core, 3, stride=1, padding=1)[0, 0] > 0
        return self._occupied

    def occupied_box(self) -> tuple[Tensor, Tensor] | None:
        """World-space corners ``(lo, hi)`` of the box around the occupied cells; ``None`` when no
        cell is occupied. Rays are only sampled inside it."""
        if self._box is None:
            cells = self.occupied.nonzero()
            if cells.numel() == 0:
                self._box = ()
            else:
                size = 2 * self.radius / self.resolution
                lo = cells.amin(dim=0).to(self.density.dtype) * size - self.radius
                hi = (cells.amax(dim=0) + 1).to(self.density.dtype) * size - self.radius
                self._box = (lo, hi)
        return self._box or None

    def effective_threshold(self) -> float:
        """``min(threshold, mean cell density)``; before the first update every cell is occupied."""
        if torch.isinf(self.density).any():
            return float("-inf")
        return min(self.threshold, float(self.density.mean()))

    def cell_index(self, points: Float[Tensor, "N 3"]) -> Tensor:
        idx = ((points / self.radius + 1) * 0.5 * self.resolution).long().clamp(0, self.resolution - 1)
        return (idx[:, 0] * self.resolution + idx[:, 1]) * self.resolution + idx[:, 2]

    def query(self, points: Float[Tensor, "N 3"]) -> Bool[Tensor, "N"]:
        return self.occupied.view(-1)[self.cell_index(points)]

    @torch.no_grad()
    def update(self, density_fn, chunk: int = 65536) -> None:
        """Evaluate density at a jittered point in every cell and fold it into the EMA."""
        r = self.resolution
        device = self.density.device
        ii = torch.stack(torch.meshgrid(*[torch.arange(r, device=device)] * 3, indexing="ij"), dim=-1).reshape(-1, 3)
        pts = ((ii + torch.rand(ii.shape, device=device)) / r * 2 - 1) * self.radius
        new = torch.cat([density_fn(p) for p in pts.split(chunk)]).reshape(r, r, r)
        old = torch.where(torch.isinf(self.density), torch.zeros_like(new), self.density)
        self.density.copy_(torch.maximum(old * self.decay, new))
        self.updates += 1
        self._invalidate()
