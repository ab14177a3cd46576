import torch

from lift3d.encodings.hash_grid import HashGridConfig
from lift3d.geometry.implicit_volume import ImplicitVolume


def make(normal_type):
    torch.manual_seed(0)
    cfg = ImplicitVolume.Config(encoding=HashGridConfig(n_levels=4, log2_hashmap_size=10), normal_type=normal_type,
                                finite_difference_eps=1e-3)
    return ImplicitVolume(cfg)


def test_blob_density_peaks_at_centre_and_normals_point_outwards():
    geo = make("analytic")
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0], [0.9, 0.0, 0.0]])
    d = geo.forward_density(pts)
    assert d[0] > d[1] > d[2]
    dirs = torch.nn.functional.normalize(torch.randn(64, 3), dim=-1)
    out = geo(dirs * 0.4, with_normal=True)
    cos = (out.normal * dirs).sum(-1)
    assert cos.min() > 0.9  # the blob's gradient dominates the small random MLP


def test_analytic_and_finite_difference_normals_agree():
    analytic, fd = make("analytic"), make("finite_difference")
    fd.load_state_dict(analytic.state_dict())
    pts = torch.rand(200, 3) * 0.8 - 0.4
    n_a = analytic(pts, with_normal=True).normal
    n_f = fd(pts, with_normal=True).normal
    assert ((n_a * n_f).sum(-1) > 0.99).float().mean() > 0.95


def test_analytic_normals_are_trainable():
    geo = make("analytic")
    out = geo(torch.rand(50, 3) - 0.5, with_normal=True)
    out.normal[:, 2].sum().backward()
    assert geo.encoding.table.grad.abs().sum() > 0
    assert geo.density_network[0].weight.grad.abs().sum() > 0
