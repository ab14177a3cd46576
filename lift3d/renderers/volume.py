"""``nerf-volume-renderer``: stratified ray marching with empty-space skipping and alpha compositing.

The pure-PyTorch path is the reference. ``compositing: nerfacc`` computes the weights with
nerfacc's batched ``render_weight_from_density`` (imported only when selected).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from lift3d.data.batch import CameraBatch
from lift3d.errors import ConfigError
from lift3d.registry import register
from lift3d.renderers.base import BaseRenderer, RenderOutput
from lift3d.renderers.occupancy_grid import OccupancyGrid


def ray_box_intersect(rays_o: Tensor, rays_d: Tensor, radius: float) -> tuple[Tensor, Tensor, Tensor]:
    """Entry and exit distance of rays with the box [-radius, radius]^3, and whether they hit it."""
    return ray_aabb_intersect(rays_o, rays_d, -radius, radius)


def ray_aabb_intersect(rays_o: Tensor, rays_d: Tensor, lo, hi) -> tuple[Tensor, Tensor, Tensor]:
    """Entry and exit distance (entry clamped at 0) of rays with the box [lo, hi] (numbers or (3,)
    tensors), and whether they hit it."""
    inv = 1.0 / torch.where(rays_d.abs() < 1e-9, torch.full_like(rays_d, 1e-9), rays_d)
    t0 = (lo - rays_o) * inv
    t1 = (hi - rays_o) * inv
    near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=0)
    far = torch.maximum(t0, t1).amin(dim=-1)
    return near, far, far > near


def composite_weights(density: Float[Tensor, "R S"], deltas: Float[Tensor, "R S"]) -> Float[Tensor, "R S"]:
    """Alpha-compositing weights ``T_i * alpha_i`` with ``alpha_i = 1 - exp(-sigma_i delta_i)``."""
    alpha = 1 - torch.exp(-density * deltas)
    # exclusive transmittance, computed in log space for stability
    return alpha * _exclusive_transmittance(density, deltas)


@register("nerf-volume-renderer")
class NeRFVolumeRenderer(BaseRenderer):
    @dataclass
    class Config:
        num_samples_per_ray: int = 64
        """Stratified samples per ray inside the scene box."""
        randomized: bool = True
        """Jitter sample positions during training."""
        estimator: Literal["occgrid", "none"] = "occgrid"
        """Empty-space skipping: ``occgrid`` evaluates the geometry only in occupied cells."""
        grid_resolution: int = 32
        """Cells per side of the occupancy grid."""
        grid_update_every: int = 16
        """Training steps between occupancy-grid updates."""
        grid_alpha_threshold: float = 0.01
        """A cell is occupied when a nominal step through it would have at least this opacity."""
        grid_ema_decay: float = 0.95
        """Decay of the per-cell max-density EMA."""
        compositing: Literal["torch", "nerfacc"] = "torch"
        """Weights by the PyTorch reference or by nerfacc (must be installed)."""
        eval_chunk_rays: int = 8192
        """Rays per chunk when rendering without gradients."""
        early_stop_eps: float = 0.0
        """Early ray termination: samples behind which the transmittance has fallen below this are
        not evaluated with gradients and normals (a density-only pass without gradients finds
        them; their share of a pixel is below ``early_stop_eps``). 0: off. Pays when a ray crosses
        many occupied samples of an opaque object (fine sampling, cameras close to the object)."""
        early_stop_probe_every: int = 8
        """The density-only pass costs about a third of a forward pass and saves nothing while the
        object is not yet opaque (a fresh blob): when it drops under 10 % of the samples, the next
        ``early_stop_probe_every - 1`` renders skip it and the one after probes again. 1: every render."""

    def __init__(self, cfg: Config, geometry, material, background) -> None:
        super().__init__(cfg, geometry, material, background)
        radius = geometry.radius
        nominal_step = 2 * radius / cfg.num_samples_per_ray
        density_threshold = -math.log(1 - cfg.grid_alpha_threshold) / nominal_step
        self.occupancy = OccupancyGrid(radius, cfg.grid_resolution, density_threshold, cfg.grid_ema_decay)
        self._early_stop_skips = 0  # renders left that skip the density-only pass (it did not pay)
        if cfg.compositing == "nerfacc":
            try:
                import nerfacc  # noqa: F401
            except ImportError as exc:
                raise ConfigError("renderer.compositing=nerfacc needs nerfacc; pip install nerfacc or set compositing=torch") from exc

    def update_step(self, global_step: int) -> None:
        if self.training and self.cfg.estimator == "occgrid" and global_step % self.cfg.grid_update_every == 0:
            self.occupancy.update(self.geometry.forward_density)

    def _weights(self, density: Tensor, t_starts: Tensor, t_ends: Tensor) -> Tensor:
        if self.cfg.compositing == "nerfacc":
            import nerfacc

            weights, _, _ = nerfacc.render_weight_from_density(t_starts, t_ends, density)
            return weights
        return composite_weights(density, t_ends - t_starts)

    def forward(self, batch: CameraBatch, need_normal: bool = False) -> RenderOutput:
        if hasattr(self.material, "choose_shading") and self.training:
            self.material.choose_shading()
        b, h, w = batch.size, batch.height, batch.width
        rays_o = batch.rays_o.reshape(-1, 3)
        rays_d = batch.rays_d.reshape(-1, 3)
        light = batch.light_position[:, None, :].expand(b, h * w, 3).reshape(-1, 3)
        need_normal = need_normal or self.material.needs_normal_now()
        if torch.is_grad_enabled():
            out = self._render_rays(rays_o, rays_d, light, need_normal)
        else:
            pieces = [
                self._render_rays(o, d, l, need_normal)
                for o, d, l in zip(*(t.split(self.cfg.eval_chunk_rays) for t in (rays_o, rays_d, light)))
            ]
            out = _merge_chunks(pieces)
        bg = self.background(batch.rays_d)
        opacity = out["opacity"].reshape(b, h, w, 1)
        rgb = out["rgb"].reshape(b, h, w, -1) + (1 - opacity) * bg
        normal = out["normal"].reshape(b, h, w, 3) if out["normal"] is not None else None
        orient = out["orient"].reshape(b, h, w) if out["orient"] is not None else None
        return RenderOutput(
            comp_rgb=rgb,
            comp_rgb_bg=bg,
            opacity=opacity,
            depth=out["depth"].reshape(b, h, w, 1),
            comp_normal=normal,
            orient=orient,
            samples_evaluated=out["evaluated"],
            samples_total=out["total"],
            sample_weights=out["weights"],
        )

    def _sample_range(self, rays_o: Tensor, rays_d: Tensor, near: Tensor, span: Tensor, hit: Tensor, n_s: int) -> tuple[Tensor, Tensor]:
        """Per ray the first and one-past-last sample index to make: all samples of a ray that hits
        the scene box, or with the occupancy grid those inside the box of its occupied cells."""
        zero = torch.zeros_like(near, dtype=torch.long)
        if self.cfg.estimator != "occgrid":
            return zero, torch.where(hit, n_s, 0)
        box = self.occupancy.occupied_box()
        if box is None:
            return zero, zero
        b_near, b_far, b_hit = ray_aabb_intersect(rays_o, rays_d, *box)
        live = hit & b_hit
        safe = torch.where(live, span, torch.ones_like(span))
        k_lo = ((b_near - near) / safe * n_s).floor().clamp(0, n_s).long()
        k_hi = ((b_far - near) / safe * n_s).ceil().clamp(0, n_s).long()
        return torch.where(live, k_lo, zero), torch.where(live, torch.maximum(k_hi, k_lo), zero)

    @torch.no_grad()
    def _visible(self, sel: Tensor, pts: Tensor, n_rays: int, n_s: int, deltas: Tensor) -> Tensor:
        """Which samples have a transmittance (from a density-only pass) above ``early_stop_eps``."""
        density = torch.zeros(n_rays * n_s, dtype=pts.dtype, device=pts.device)
        density[sel] = self.geometry.forward_density(pts)
        trans = _exclusive_transmittance(density.reshape(n_rays, n_s), deltas).reshape(-1)
        return trans[sel] > self.cfg.early_stop_eps

    def _render_rays(self, rays_o: Tensor, rays_d: Tensor, light: Tensor, need_normal: bool) -> dict:
        n_rays, n_s = rays_o.shape[0], self.cfg.num_samples_per_ray
        near, far, hit = ray_box_intersect(rays_o, rays_d, self.geometry.radius)
        far = torch.where(hit, far, near)
        span = far - near
        # sample k of a ray lies in [near + span k / n_s, near + span (k + 1) / n_s); only the
        # samples [k_lo, k_hi) that can lie in an occupied cell are made at all
        k_lo, k_hi = self._sample_range(rays_o, rays_d, near, span, hit, n_s)
        counts = k_hi - k_lo
        ray_idx = torch.repeat_interleave(torch.arange(n_rays, device=rays_o.device), counts)
        first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts - k_lo, counts)
        k = torch.arange(ray_idx.numel(), device=rays_o.device) - first
        jitter = torch.rand(k.shape, device=rays_o.device) if (self.training and self.cfg.randomized) else 0.5
        t_cand = near[ray_idx] + span[ray_idx] * (k + jitter) / n_s
        pts = rays_o[ray_idx] + t_cand[:, None] * rays_d[ray_idx]
        if self.cfg.estimator == "occgrid":
            occupied = self.occupancy.query(pts)
            ray_idx, k, t_cand, pts = ray_idx[occupied], k[occupied], t_cand[occupied], pts[occupied]
        sel = ray_idx * n_s + k
        u = torch.arange(n_s, dtype=rays_o.dtype, device=rays_o.device)[None]
        t_starts = near[:, None] + span[:, None] * u / n_s
        t_ends = t_starts + span[:, None] / n_s
        if self.cfg.early_stop_eps > 0 and sel.numel():
            if self._early_stop_skips > 0:
                self._early_stop_skips -= 1
            else:
                before = sel.numel()
                keep = self._visible(sel, pts, n_rays, n_s, t_ends - t_starts)
                sel, pts, t_cand = sel[keep], pts[keep], t_cand[keep]
                if sel.numel() > 0.9 * before:
                    self._early_stop_skips = max(self.cfg.early_stop_probe_every, 1) - 1
        geo = self.geometry(pts, with_normal=need_normal)
        density = torch.zeros(n_rays * n_s, dtype=rays_o.dtype, device=rays_o.device)
        density = density.index_put((sel,), geo.density).reshape(n_rays, n_s)
        weights = self._weights(density, t_starts, t_ends)
        w_sel = weights.reshape(-1)[sel]
        rays_of_sel = sel // n_s
        colour = self.material(geo.features, geo.normal, pts, light[rays_of_sel])
        rgb = torch.zeros(n_rays, colour.shape[-1], dtype=rays_o.dtype, device=rays_o.device).index_add(0, rays_of_sel, w_sel[:, None] * colour)
        opacity = weights.sum(dim=1)
        depth = torch.zeros(n_rays, dtype=rays_o.dtype, device=rays_o.device).index_add(0, rays_of_sel, w_sel * t_cand)
        normal = orient = None
        if geo.normal is not None:
            normal = torch.zeros(n_rays, 3, dtype=rays_o.dtype, device=rays_o.device).index_add(0, rays_of_sel, w_sel[:, None] * geo.normal)
            facing = (geo.normal * rays_d[rays_of_sel]).sum(-1).clamp(min=0) ** 2
            orient = torch.zeros(n_rays, dtype=rays_o.dtype, device=rays_o.device).index_add(0, rays_of_sel, w_sel.detach() * facing)
        return {
            "rgb": rgb,
            "opacity": opacity[:, None],
            "depth": depth[:, None],
            "normal": normal,
            "orient": orient,
            "weights": w_sel,
            "evaluated": int(sel.numel()),
            "total": int(hit.sum().item()) * n_s,
        }


def _exclusive_transmittance(density: Float[Tensor, "R S"], deltas: Float[Tensor, "R S"]) -> Float[Tensor, "R S"]:
    """Transmittance in front of each sample, ``exp(-sum_{j<i} sigma_j delta_j)``."""
    sd = density * deltas
    return torch.exp(-torch.cumsum(torch.cat([torch.zeros_like(sd[:, :1]), sd[:, :-1]], dim=1), dim=1))


def _merge_chunks(pieces: list[dict]) -> dict:
    """Join per-chunk results: tensors concatenated, counts summed."""
    out = {}
    for key, value in pieces[0].items():
        if value is None:
            out[key] = None
        elif isinstance(value, int):
            out[key] = sum(p[key] for p in pieces)
        else:
            out[key] = torch.cat([p[key] for p in pieces])
    return out
