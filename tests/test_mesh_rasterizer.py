"""The PyTorch mesh rasterizer against a brute-force reference; gradients of interpolation and silhouettes."""

import numpy as np
import pytest
import torch

from lift3d.renderers.rasterizer import MeshRasterizer, antialias, interpolate
from lift3d.renderers.rasterize_torch import barycentrics


def random_mesh(n_faces: int, seed: int, batch: int = 2):
    """Random triangles in clip space (w in [1, 3], mostly inside the view)."""
    g = torch.Generator().manual_seed(seed)
    verts = n_faces * 3
    ndc = (torch.rand(batch, verts, 3, generator=g) * 2.2 - 1.1) * torch.tensor([1.0, 1.0, 0.9])
    w = 1 + 2 * torch.rand(batch, verts, 1, generator=g)
    clip = torch.cat([ndc * w, w], -1).double()
    faces = torch.arange(verts).view(n_faces, 3)
    return clip, faces


def brute_force(clip: np.ndarray, faces: np.ndarray, h: int, w: int):
    """Every pixel against every triangle, in float64 loops: ids, NDC depth, perspective barycentrics."""
    bsz = clip.shape[0]
    ids = -np.ones((bsz, h, w), dtype=np.int64)
    depth = np.ones((bsz, h, w))
    bary = np.zeros((bsz, h, w, 3))
    for b in range(bsz):
        sx = (clip[b, :, 0] / clip[b, :, 3] + 1) * w / 2 - 0.5
        sy = (1 - clip[b, :, 1] / clip[b, :, 3]) * h / 2 - 0.5
        sz = clip[b, :, 2] / clip[b, :, 3]
        for r in range(h):
            for c in range(w):
                for fi, (i, j, k) in enumerate(faces):
                    area = (sx[j] - sx[i]) * (sy[k] - sy[i]) - (sy[j] - sy[i]) * (sx[k] - sx[i])
                    if abs(area) < 1e-12:
                        continue
                    l0 = ((sx[k] - sx[j]) * (r - sy[j]) - (sy[k] - sy[j]) * (c - sx[j])) / area
                    l1 = ((sx[i] - sx[k]) * (r - sy[k]) - (sy[i] - sy[k]) * (c - sx[k])) / area
                    l2 = 1 - l0 - l1
                    if min(l0, l1, l2) < 0:
                        continue
                    z = l0 * sz[i] + l1 * sz[j] + l2 * sz[k]
                    if not -1 <= z <= 1 or z >= depth[b, r, c]:
                        continue
                    ids[b, r, c], depth[b, r, c] = fi, z
                    p = np.array([l0 / clip[b, i, 3], l1 / clip[b, j, 3], l2 / clip[b, k, 3]])
                    bary[b, r, c] = p / p.sum()
    return ids, depth, bary


@pytest.mark.parametrize("n_faces,h,w,seed", [(1, 8, 8, 0), (6, 12, 16, 1), (20, 16, 16, 2), (40, 20, 12, 3)])
def test_rasterizer_matches_brute_force(n_faces, h, w, seed):
    clip, faces = random_mesh(n_faces, seed)
    rast = MeshRasterizer().rasterize(clip, faces, (h, w))
    ids, depth, bary = brute_force(clip.numpy(), faces.numpy(), h, w)
    # compare where the reference's winner is unambiguous (depth gap to the runner-up is not a tie)
    got = rast.tri_id.numpy()
    agree = (got == ids).mean()
    assert agree > 0.99, agree
    same = got == ids
    np.testing.assert_allclose(rast.depth.numpy()[same], depth[same], atol=1e-6)
    np.testing.assert_allclose(rast.bary.numpy()[same], bary[same], atol=1e-6)
    assert (ids >= 0).sum() > 0  # the case covers pixels at all


def test_chunked_rasterization_gives_the_same_image(monkeypatch):
    from lift3d.renderers import rasterize_torch

    clip, faces = random_mesh(30, 5)
    full = MeshRasterizer().rasterize(clip, faces, (24, 24)).tri_id
    monkeypatch.setattr(rasterize_torch, "MAX_CANDIDATES", 7)
    assert torch.equal(MeshRasterizer().rasterize(clip, faces, (24, 24)).tri_id, full)


def test_triangles_behind_the_camera_are_dropped_and_empty_views_are_background():
    clip, faces = random_mesh(4, 7, batch=1)
    clip[..., 3] = -clip[..., 3].abs()
    rast = MeshRasterizer().rasterize(clip, faces, (8, 8))
    assert (rast.tri_id == -1).all() and (rast.depth == 1).all() and (rast.bary == 0).all()


def test_interpolation_gradcheck_in_attributes_and_positions():
    clip, faces = random_mesh(5, 11, batch=1)
    rast = MeshRasterizer().rasterize(clip, faces, (10, 10))
    assert rast.mask.sum() > 10
    attr = torch.randn(1, clip.shape[1], 2, dtype=torch.float64, requires_grad=True)

    def f(attr, clip):
        r = type(rast)(rast.tri_id, barycentrics(clip, faces, rast.tri_id), rast.depth)
        return interpolate(attr, r, faces)

    clip = clip.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (attr, clip), eps=1e-6, atol=1e-5)


def test_interpolated_positions_are_the_surface_points():
    """Interpolating world-space vertex positions lands on the ray of each pixel centre."""
    from lift3d.data.camera_math import look_at, projection_matrix, rays_from_cameras, spherical_to_position

    fovy = torch.tensor([45.0])
    c2w = look_at(spherical_to_position(torch.tensor([20.0]), torch.tensor([30.0]), torch.tensor([2.5])))
    mvp = projection_matrix(fovy) @ torch.linalg.inv(c2w)
    verts = torch.tensor([[-0.8, -0.6, -0.5], [0.7, -0.5, 0.1], [0.0, 0.8, 0.6], [0.2, 0.1, -0.9]])
    faces = torch.tensor([[0, 1, 2], [0, 1, 3]])
    clip = torch.cat([verts, torch.ones(4, 1)], -1) @ mvp[0].T
    rast = MeshRasterizer().rasterize(clip[None], faces, (16, 16))
    pts = interpolate(verts, rast, faces)[0]
    o, d = rays_from_cameras(c2w, 16, 16, fovy)
    m = rast.mask[0]
    assert m.sum() > 20
    v = pts[m] - o[0][m]
    cross = torch.linalg.cross(v, d[0][m])
    assert cross.norm(dim=-1).max() < 1e-4


def square(offset: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A square (two triangles) in NDC spanning [-0.5 + offset, 0.5] in x, [-0.5, 0.5] in y."""
    v = torch.tensor([[-0.5 + offset, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5 + offset, 0.5]])
    clip = torch.cat([v, torch.zeros(4, 1), torch.ones(4, 1)], -1)[None]
    return clip, torch.tensor([[0, 1, 2], [0, 2, 3]])


def test_antialiasing_gives_fractional_coverage_at_silhouettes_only():
    clip, faces = square(0.0)
    r = MeshRasterizer()
    rast = r.rasterize(clip, faces, (16, 16))
    ones = torch.ones(1, 4, 1)
    hard = interpolate(ones, rast, faces)
    soft = antialias(hard, rast, clip, faces)
    # interior (including along the shared diagonal) stays exactly covered
    assert torch.equal(soft[0, 6:10, 6:10], hard[0, 6:10, 6:10])
    # a vertical silhouette at NDC x = -0.5 is pixel x = 3.5: exactly between centres, no blend;
    # move it by a quarter pixel and the outer pixel picks up a quarter of the coverage
    clip2, _ = square(-0.5 / 16 * 2 * 0.25 * 2)  # quarter pixel = 0.5 / 16 NDC
    rast2 = r.rasterize(clip2, faces, (16, 16))
    soft2 = antialias(interpolate(ones, rast2, faces), rast2, clip2, faces)
    assert soft2[0, 8, 3, 0].item() == pytest.approx(0.25, abs=1e-5)
    assert soft2[0, 8, 4, 0].item() == pytest.approx(1.0, abs=1e-5)


def test_silhouette_gradient_moves_a_vertex_toward_a_target_mask():
    """Fitting a triangle's silhouette to a target mask by gradient descent on its vertices alone."""
    r = MeshRasterizer()
    faces = torch.tensor([[0, 1, 2]])
    target_xy = torch.tensor([[-0.6, -0.6], [0.6, -0.6], [0.0, 0.7]])

    def clip_of(xy):
        return torch.cat([xy, torch.zeros(3, 1), torch.ones(3, 1)], -1)[None]

    with torch.no_grad():
        tc = clip_of(target_xy)
        tr = r.rasterize(tc, faces, (32, 32))
        target = antialias(interpolate(torch.ones(1, 3, 1), tr, faces), tr, tc, faces)
    xy = (target_xy + torch.tensor([[0.15, 0.1], [-0.1, 0.15], [0.1, -0.2]])).requires_grad_(True)
    opt = torch.optim.Adam([xy], lr=0.01)
    losses = []
    for _ in range(60):
        c = clip_of(xy)
        rast = r.rasterize(c, faces, (32, 32))
        img = antialias(interpolate(torch.ones(1, 3, 1), rast, faces), rast, c, faces)
        loss = ((img - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        assert xy.grad.abs().sum() > 0  # a constant-colour image: every gradient comes from the silhouette
        opt.step()
        losses.append(loss.item())
    start_err = torch.tensor([[0.15, 0.1], [-0.1, 0.15], [0.1, -0.2]]).norm(dim=-1)
    end_err = (xy.detach() - target_xy).norm(dim=-1)
    assert losses[-1] < 0.2 * losses[0]
    assert (end_err < 0.5 * start_err).all(), end_err


def test_unknown_or_missing_backend_is_a_clear_error():
    from lift3d.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown rasterizer backend"):
        MeshRasterizer("opengl")
    try:
        import nvdiffrast  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="not installed"):
            MeshRasterizer("nvdiffrast")
