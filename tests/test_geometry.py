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


def test_central_differences_are_second_order_and_forward_first_order():
    """On a known smooth density, halving the step quarters the central error and halves the forward one."""
    centre = torch.tensor([0.1, -0.2, 0.15])

    def density(p):
        return torch.exp(-((p - centre) ** 2).sum(-1) / 0.2)

    def exact(p):
        return density(p)[:, None] * (-2 * (p - centre) / 0.2)

    pts = torch.rand(100, 3, dtype=torch.float64) * 0.8 - 0.4
    errors = {}
    for scheme in ("central", "forward"):
        for eps in (0.04, 0.02):
            geo = ImplicitVolume(ImplicitVolume.Config(encoding=HashGridConfig(n_levels=2, log2_hashmap_size=8),
                                                       normal_type="finite_difference", finite_difference_eps=eps,
                                                       finite_difference_scheme=scheme))
            geo.forward_density = density
            got = geo._finite_difference_gradient(pts, density(pts))
            errors[scheme, eps] = (got - exact(pts)).norm(dim=-1).max().item()
    assert errors["central", 0.04] / errors["central", 0.02] > 3.5  # O(h^2)
    assert 1.6 < errors["forward", 0.04] / errors["forward", 0.02] < 2.4  # O(h)
    assert errors["central", 0.02] * 10 < errors["forward", 0.02]


def test_blob_width_is_in_world_units_whatever_the_scene_radius():
    """threestudio's magic3d blob (std 0.5) is a ball of radius 0.5 in world units, also in a radius-2 scene."""
    densities = []
    for radius in (1.0, 2.0):
        torch.manual_seed(0)
        geo = ImplicitVolume(ImplicitVolume.Config(radius=radius, encoding=HashGridConfig(n_levels=4, log2_hashmap_size=10)))
        pts = torch.tensor([[0.0, 0.0, 0.0], [0.25, 0.0, 0.0], [0.5, 0.0, 0.0]])
        densities.append(geo.density_bias(pts))
    assert torch.allclose(densities[0], densities[1])
    assert torch.allclose(densities[1], torch.tensor([10.0, 5.0, 0.0]))
