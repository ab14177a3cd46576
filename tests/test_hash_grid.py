"""The PyTorch hash grid against a plain per-point reference, forward and backward."""

import math

import pytest
import torch

from lift3d.encodings.hash_grid import PRIMES, HashGridConfig, HashGridEncoding, _HashGridFunction, level_layout


def reference_encode(x: torch.Tensor, table: torch.Tensor, cfg: HashGridConfig) -> torch.Tensor:
    """Obviously correct: Python integers for the hash, autograd for the gradients."""
    out = []
    offset = 0
    for res, size, dense in level_layout(cfg):
        level_table = table[offset : offset + size]
        offset += size
        feats_per_point = []
        for p in x:
            pos = p * (res - 1)
            base = [min(max(int(math.floor(v)), 0), res - 2) for v in pos.tolist()]
            acc = 0
            for c in range(8):
                corner = [base[d] + ((c >> d) & 1) for d in range(3)]
                if dense:
                    index = corner[0] + corner[1] * res + corner[2] * res * res
                else:
                    index = (corner[0] * PRIMES[0] ^ corner[1] * PRIMES[1] ^ corner[2] * PRIMES[2]) % size
                w = 1.0
                for d in range(3):
                    f = pos[d] - base[d]
                    w = w * (f if (c >> d) & 1 else 1 - f)
                acc = acc + w * level_table[index]
            feats_per_point.append(acc)
        out.append(torch.stack(feats_per_point))
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("implementation", ["torch", "cpp"])
@pytest.mark.parametrize("log2_size, n_levels, features", [(8, 3, 2), (12, 4, 2), (14, 5, 4), (19, 6, 2)])
def test_forward_and_backward_match_reference(log2_size, n_levels, features, implementation):
    torch.manual_seed(log2_size)
    cfg = HashGridConfig(n_levels=n_levels, n_features_per_level=features, log2_hashmap_size=log2_size,
                         base_resolution=4, per_level_scale=2.0, init_scale=1.0, implementation=implementation)
    enc = HashGridEncoding(cfg)
    assert enc.backend == implementation
    # both dense and hashed levels must be present for the larger configs
    assert any(not dense for _, _, dense in enc.layout) or log2_size == 19
    x = torch.rand(40, 3)
    x[0] = 1.0  # the upper boundary
    x[1] = 0.0
    x_fast = x.clone().requires_grad_(True)
    y = enc(x_fast)
    table_ref = enc.table.detach().clone().requires_grad_(True)
    x_ref = x.clone().requires_grad_(True)
    y_ref = reference_encode(x_ref, table_ref, cfg)
    assert y.shape == (40, n_levels * features)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    torch.testing.assert_close(enc.table.grad, table_ref.grad, rtol=1e-4, atol=1e-5)
    # x = 0 and x = 1 sit on cell faces where the gradient is one-sided; compare interior points
    torch.testing.assert_close(x_fast.grad[2:], x_ref.grad[2:], rtol=1e-3, atol=1e-3)


def test_int32_hash_equals_int64_hash():
    from lift3d.encodings.hash_grid import corner_indices_and_weights

    x = torch.rand(1000, 3)
    size, res = 2**19, 2048
    idx, _, _ = corner_indices_and_weights(x, res, size, dense=False)
    base = (x * (res - 1)).floor().clamp(0, res - 2).long()
    for c in range(8):
        corner = base + torch.tensor([(c >> d) & 1 for d in range(3)])
        expected = (corner[:, 0] * PRIMES[0] ^ corner[:, 1] * PRIMES[1] ^ corner[:, 2] * PRIMES[2]) % size
        assert torch.equal(idx[c].long(), expected)


def test_gradcheck_float64():
    cfg = HashGridConfig(n_levels=3, n_features_per_level=2, log2_hashmap_size=6, base_resolution=3, per_level_scale=2.0)
    layout = level_layout(cfg)
    sizes = [s for _, s, _ in layout]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    table = torch.randn(sum(sizes), 2, dtype=torch.float64, requires_grad=True)
    # keep points away from cell faces, where the trilinear interpolation is not differentiable
    x = (torch.rand(6, 3, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    fn = lambda xx, tt: _HashGridFunction.apply(xx, tt, layout, offsets)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, table), eps=1e-6, atol=1e-5)
    # second order (analytic normals trained through): gradgradcheck
    assert torch.autograd.gradgradcheck(fn, (x, table), eps=1e-6, atol=1e-4)


def test_tcnn_selection_without_tcnn_is_a_clear_error():
    from lift3d.errors import ConfigError

    try:
        import tinycudann  # noqa: F401

        pytest.skip("tiny-cuda-nn is installed")
    except ImportError:
        pass
    with pytest.raises(ConfigError, match="tiny-cuda-nn"):
        HashGridEncoding(HashGridConfig(implementation="tcnn"))
    assert HashGridEncoding(HashGridConfig(implementation="auto", log2_hashmap_size=10)).backend == "cpp"


def _normal_loss_table_grad(table: torch.Tensor, x: torch.Tensor, layout, offsets, weights: torch.Tensor) -> torch.Tensor:
    """Gradient wrt the table of a loss on d(features)/dx: the analytic-normal path (double backward)."""
    table = table.detach().clone().requires_grad_(True)
    x = x.detach().clone().requires_grad_(True)
    y = _HashGridFunction.apply(x, table, layout, offsets)
    density = (y * weights[0]).sum(-1)
    (gx,) = torch.autograd.grad(density.sum(), x, create_graph=True)
    loss = (gx * weights[1][: gx.shape[0]]).sum()
    loss.backward()
    return table.grad


@pytest.mark.parametrize(
    "log2_size, n_levels, features, n_points",
    [(8, 3, 2, 50), (12, 4, 2, 200), (14, 5, 4, 120), (10, 6, 1, 80), (16, 8, 2, 500)],
)
def test_normal_loss_reaches_the_table_in_float32_as_in_float64(log2_size, n_levels, features, n_points):
    """The float32 fast gather must not cut the graph of analytic normals (it did: gradient ~1e-7 vs ~1)."""
    torch.manual_seed(n_points)
    cfg = HashGridConfig(n_levels=n_levels, n_features_per_level=features, log2_hashmap_size=log2_size,
                         base_resolution=4, per_level_scale=1.8, init_scale=1.0)
    layout = level_layout(cfg)
    sizes = [s for _, s, _ in layout]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    table64 = torch.randn(sum(sizes), features, dtype=torch.float64)
    x64 = torch.rand(n_points, 3, dtype=torch.float64) * 0.9 + 0.05
    weights64 = (torch.randn(n_levels * features, dtype=torch.float64), torch.randn(n_points, 3, dtype=torch.float64))
    g64 = _normal_loss_table_grad(table64, x64, layout, offsets, weights64)
    g32 = _normal_loss_table_grad(table64.float(), x64.float(), layout, offsets, tuple(w.float() for w in weights64))
    assert g64.norm() > 1e-3  # the loss does depend on the table
    rel = (g32.double() - g64).norm() / g64.norm()
    cos = torch.nn.functional.cosine_similarity(g32.double().flatten(), g64.flatten(), dim=0)
    assert rel < 1e-3, f"relative error {rel:.2e}"
    assert cos > 0.9999, f"cosine {cos:.5f}"


def test_textureless_shading_table_gradient_float32_matches_float64():
    """Through the geometry's own analytic normals (the path a textureless render takes)."""
    from lift3d.geometry.implicit_volume import ImplicitVolume

    torch.manual_seed(0)
    cfg = ImplicitVolume.Config(encoding=HashGridConfig(n_levels=4, log2_hashmap_size=12, base_resolution=4,
                                                        per_level_scale=2.0, init_scale=0.5))
    geo32 = ImplicitVolume(cfg)
    geo64 = ImplicitVolume(cfg).double()
    geo64.load_state_dict({k: v.double() for k, v in geo32.state_dict().items()})
    points = torch.rand(300, 3) * 1.2 - 0.6
    light = torch.nn.functional.normalize(torch.tensor([1.0, 0.5, 0.8]), dim=0)
    grads = []
    for geo, dtype in ((geo32, torch.float32), (geo64, torch.float64)):
        out = geo(points.to(dtype), with_normal=True)
        shade = (out.normal * light.to(dtype)).sum(-1).clamp(min=0)
        (shade * out.density.detach()).sum().backward()
        grads.append(geo.encoding.table.grad.double())
    g32, g64 = grads
    cos = torch.nn.functional.cosine_similarity(g32.flatten(), g64.flatten(), dim=0)
    assert (g32 - g64).norm() / g64.norm() < 1e-3 and cos > 0.9999


@pytest.mark.parametrize("features, log2_size, n_levels", [(1, 6, 2), (2, 7, 3), (4, 6, 3)])
def test_gradgradcheck_dense_and_hashed_levels(features, log2_size, n_levels):
    cfg = HashGridConfig(n_levels=n_levels, n_features_per_level=features, log2_hashmap_size=log2_size,
                         base_resolution=3, per_level_scale=2.5)
    layout = level_layout(cfg)
    assert any(not dense for _, _, dense in layout) and any(dense for _, _, dense in layout)
    sizes = [s for _, s, _ in layout]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    torch.manual_seed(features)
    table = torch.randn(sum(sizes), features, dtype=torch.float64, requires_grad=True)
    x = (torch.rand(5, 3, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    fn = lambda xx, tt: _HashGridFunction.apply(xx, tt, layout, offsets)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x, table), eps=1e-6, atol=1e-4)


def test_auto_picks_tcnn_only_when_the_run_is_on_cuda(monkeypatch):
    """``--gpu cpu`` on a machine with CUDA and tiny-cuda-nn must keep the PyTorch hash grid."""
    import sys
    import types

    from lift3d import runtime
    from lift3d.errors import ConfigError

    monkeypatch.setitem(sys.modules, "tinycudann", types.ModuleType("tinycudann"))  # installed
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # and a GPU exists
    try:
        runtime.set_run_device("cpu")
        assert HashGridEncoding._choose_backend("auto") == "cpp"
        with pytest.raises(ConfigError, match="not on CUDA"):
            HashGridEncoding._choose_backend("tcnn")
        runtime.set_run_device("cuda")
        assert HashGridEncoding._choose_backend("auto") == "tcnn"
        runtime.set_run_device(None)  # used as a library: CUDA present counts
        assert HashGridEncoding._choose_backend("auto") == "tcnn"
    finally:
        runtime.set_run_device(None)


@pytest.mark.parametrize("n", [1, 7, 300])
def test_trilinear_gradient_matches_autograd_of_the_trilinear_weights(n):
    from lift3d.encodings.hash_grid import _corner_factors, _trilinear_gradient

    torch.manual_seed(n)
    frac = torch.rand(n, 3, dtype=torch.float64, requires_grad=True)
    dfeat = torch.randn(8, n, dtype=torch.float64, requires_grad=True)
    weights = _corner_factors(frac).prod(dim=-1)  # (8, N), corner c takes the upper side on axis d when bit d is set
    expected = torch.autograd.grad((weights * dfeat.detach()).sum(), frac, create_graph=True)[0]
    got = _trilinear_gradient(dfeat, frac)
    assert torch.allclose(got, expected, atol=1e-12)
    # and its own derivatives, which the double backward of analytic normals takes
    assert torch.autograd.gradcheck(_trilinear_gradient, (dfeat, frac))


# --- the fused C++ kernels against the PyTorch reference ---------------------------------------


def _layout_offsets_levels(cfg: HashGridConfig):
    from lift3d.encodings.hash_grid_cpp import levels_tensor

    layout = level_layout(cfg)
    sizes = [s for _, s, _ in layout]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    return layout, offsets, levels_tensor(layout, offsets)


@pytest.mark.parametrize("features, log2_size, n_levels", [(1, 6, 2), (2, 7, 3), (4, 6, 3)])
def test_cpp_gradcheck_and_gradgradcheck_float64(features, log2_size, n_levels):
    from lift3d.encodings.hash_grid_cpp import CppHashGridFunction

    cfg = HashGridConfig(n_levels=n_levels, n_features_per_level=features, log2_hashmap_size=log2_size,
                         base_resolution=3, per_level_scale=2.5)
    layout, _, levels = _layout_offsets_levels(cfg)
    assert any(not dense for _, _, dense in layout) and any(dense for _, _, dense in layout)
    torch.manual_seed(features)
    table = torch.randn(sum(s for _, s, _ in layout), features, dtype=torch.float64, requires_grad=True)
    x = (torch.rand(5, 3, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    fn = lambda xx, tt: CppHashGridFunction.apply(xx, tt, levels)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, table), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradgradcheck(fn, (x, table), eps=1e-6, atol=1e-4)


@pytest.mark.parametrize("n_points", [1, 333, 5000])
def test_cpp_matches_torch_at_the_default_float32_settings(n_points):
    """The path users run: default config (16 levels, 2^19 table), float32, first and second order."""
    from lift3d.encodings.hash_grid import input_gradient_only
    from lift3d.encodings.hash_grid_cpp import CppHashGridFunction

    torch.manual_seed(n_points)
    cfg = HashGridConfig(init_scale=1.0)
    layout, offsets, levels = _layout_offsets_levels(cfg)
    table0 = torch.rand(sum(s for _, s, _ in layout), 2) * 2 - 1
    x0 = torch.rand(n_points, 3) * 0.98 + 0.01
    mlp = torch.randn(32)
    normal_target = torch.randn(n_points, 3)
    results = []
    for fn in (lambda x, t: _HashGridFunction.apply(x, t, layout, offsets), lambda x, t: CppHashGridFunction.apply(x, t, levels)):
        table = table0.clone().requires_grad_(True)
        x = x0.clone().requires_grad_(True)
        y = fn(x, table)
        density = (y * mlp).sum(-1)
        with input_gradient_only():
            (normal,) = torch.autograd.grad(density.sum(), x, create_graph=True)
        ((normal * normal_target).sum() + density.square().sum()).backward()
        results.append((y.detach(), normal.detach(), table.grad, x.grad))
    (y_t, n_t, gt_t, gx_t), (y_c, n_c, gt_c, gx_c) = results
    torch.testing.assert_close(y_c, y_t, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(n_c, n_t, rtol=1e-4, atol=1e-3 * n_t.abs().max().item())
    rel = (gt_c - gt_t).norm() / gt_t.norm()
    assert rel < 1e-4, f"table gradient relative error {rel:.2e}"
    rel = (gx_c - gx_t).norm() / gx_t.norm()
    assert rel < 1e-3, f"input gradient relative error {rel:.2e}"


def test_cpp_unavailable_falls_back_with_a_warning_and_is_a_clear_error_when_asked_for(monkeypatch):
    from lift3d.encodings import hash_grid, hash_grid_cpp
    from lift3d.errors import ConfigError

    monkeypatch.setenv("LIFT3D_NO_CPP", "1")
    monkeypatch.setattr(hash_grid_cpp, "_state", {})
    monkeypatch.setattr(hash_grid, "_warned_cpp", [])
    with pytest.warns(UserWarning, match="LIFT3D_NO_CPP"):
        assert HashGridEncoding(HashGridConfig(log2_hashmap_size=10)).backend == "torch"
    with pytest.raises(ConfigError, match="'cpp' is unavailable: LIFT3D_NO_CPP=1"):
        HashGridEncoding(HashGridConfig(implementation="cpp", log2_hashmap_size=10))


def test_cpp_feature_counts_it_was_not_built_for():
    from lift3d.errors import ConfigError

    assert HashGridEncoding(HashGridConfig(n_features_per_level=3, log2_hashmap_size=8)).backend == "torch"
    with pytest.raises(ConfigError, match="n_features_per_level in"):
        HashGridEncoding(HashGridConfig(implementation="cpp", n_features_per_level=3, log2_hashmap_size=8))


@pytest.mark.parametrize("train", [True, False])
def test_geometry_with_cpp_kernels_matches_the_reference_through_analytic_normals(train):
    """ImplicitVolume at its defaults (float32), C++ kernels (whose points leaf is marked as being
    for normals only) against the PyTorch reference: the same outputs and parameter gradients."""
    from lift3d.geometry.implicit_volume import ImplicitVolume

    torch.manual_seed(3)
    outs, grads = [], []
    points = torch.rand(2000, 3) * 1.6 - 0.8
    state = None
    for implementation in ("torch", "cpp"):
        geo = ImplicitVolume(ImplicitVolume.Config(encoding=HashGridConfig(implementation=implementation, init_scale=0.5)))
        assert geo.encoding.backend == implementation
        if state is None:
            state = geo.state_dict()
        geo.load_state_dict(state)
        with torch.set_grad_enabled(train):
            out = geo(points, with_normal=True)
        outs.append((out.density.detach(), out.features.detach(), out.normal.detach()))
        if train:
            light = torch.tensor([0.6, 0.0, 0.8])
            loss = (out.normal * light).sum(-1).clamp(min=0).mean() + out.density.mean() + out.features.square().mean()
            loss.backward()
            grads.append({k: v.grad.clone() for k, v in geo.named_parameters()})
    for a, b in zip(*outs):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    if train:
        for name, g in grads[0].items():
            rel = (grads[1][name] - g).norm() / g.norm().clamp(min=1e-12)
            assert rel < 1e-3, f"{name}: relative error {rel:.2e}"
