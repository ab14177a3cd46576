"""The frozen prior's UNet as TorchScript-frozen traces: the same outputs as the eager UNet."""

import pytest
import torch

from lift3d.guidance.diffusers_prior import load_frozen_prior
from lift3d.guidance.traced_unet import TracedUNet
from lift3d.priors import BUNDLED


@pytest.fixture(scope="module")
def prior():
    return load_frozen_prior(BUNDLED["text"]).to(torch.device("cpu"))


def _inputs(prior, batch: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    size, ch, dim = prior.sample_size, prior.in_channels, prior.unet.config.cross_attention_dim
    return (torch.randn(batch, ch, size, size, generator=g), torch.randint(20, 980, (batch,), generator=g),
            torch.randn(batch, 10, dim, generator=g))


def test_traces_match_the_eager_unet_one_per_input_signature(prior):
    traced = TracedUNet(prior.unet)
    with torch.no_grad():
        for batch, seed in ((2, 0), (8, 1), (2, 2)):  # the third call reuses the first trace
            x, t, ctx = _inputs(prior, batch, seed)
            eager = prior.unet(x, t, encoder_hidden_states=ctx).sample
            torch.testing.assert_close(traced(x, t, ctx), eager, rtol=1e-4, atol=1e-4)
    assert traced.disabled is None and len(traced._traces) == 2


def test_with_two_threads_an_even_batch_runs_as_two_one_thread_chunks_with_the_same_outputs(prior):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        traced = TracedUNet(prior.unet)
        with torch.no_grad():
            for batch, seed in ((2, 5), (8, 6), (3, 7)):
                x, t, ctx = _inputs(prior, batch, seed)
                eager = prior.unet(x, t, encoder_hidden_states=ctx).sample
                torch.testing.assert_close(traced(x, t, ctx), eager, rtol=1e-4, atol=1e-4)
                assert torch.get_num_threads() == 2  # the chunks' one thread each is undone after the call
        assert [key[-1] for key in traced._traces] == [2, 2, 1]  # an odd batch is not split
    finally:
        torch.set_num_threads(threads)


def test_untraceable_calls_run_eagerly(prior, monkeypatch):
    x, t, ctx = _inputs(prior, 2, 3)
    traced = TracedUNet(prior.unet)
    traced(x, t, ctx)  # grad enabled: a graph may be wanted, so no trace
    assert not traced._traces
    monkeypatch.setenv("LIFT3D_NO_TRACE", "1")
    off = TracedUNet(prior.unet)
    with torch.no_grad():
        out = off(x, t, ctx)
        torch.testing.assert_close(out, prior.unet(x, t, encoder_hidden_states=ctx).sample)
    assert off.disabled == "LIFT3D_NO_TRACE=1" and not off._traces
    monkeypatch.delenv("LIFT3D_NO_TRACE")
    prior.unet.conv_in.weight.requires_grad_(True)  # a trainable UNet (e.g. a LoRA being fitted)
    try:
        trainable = TracedUNet(prior.unet)
        with torch.no_grad():
            trainable(x, t, ctx)
        assert not trainable._traces
    finally:
        prior.unet.conv_in.weight.requires_grad_(False)


def test_a_failing_trace_falls_back_to_the_eager_unet_with_a_warning(prior, monkeypatch):
    x, t, ctx = _inputs(prior, 2, 4)

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported op")

    monkeypatch.setattr(torch.jit, "trace", broken)
    traced = TracedUNet(prior.unet)
    with torch.no_grad(), pytest.warns(UserWarning, match="runs eagerly: tracing failed"):
        out = traced(x, t, ctx)
    torch.testing.assert_close(out, prior.unet(x, t, encoder_hidden_states=ctx).sample)
    assert "unsupported op" in traced.disabled


def test_both_priors_place_their_unet_channels_last_on_a_cpu_and_drop_old_traces():
    from lift3d.guidance.view_prior import load_view_prior

    for loaded in (load_frozen_prior(BUNDLED["text"]), load_view_prior(BUNDLED["view"])):
        unet = loaded.unet
        unet.to(memory_format=torch.contiguous_format)
        conv = unet.conv_in.weight
        assert not conv.is_contiguous(memory_format=torch.channels_last)
        size, ch = unet.config.sample_size, unet.config.in_channels
        x, t, ctx = torch.randn(2, ch, size, size), torch.tensor([300, 700]), torch.randn(2, 1, unet.config.cross_attention_dim)
        with torch.no_grad():
            before = loaded.denoise(x, t, ctx)
            assert len(loaded._traced._traces) == 1
            loaded.to(torch.device("cpu"))
            assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
            assert len(loaded._traced._traces) == 0  # a trace made for the old layout is not reused
            torch.testing.assert_close(loaded.denoise(x, t, ctx), before, rtol=1e-4, atol=1e-4)


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("threads,batch", [(1, 2), (2, 8)])
def test_a_bfloat16_trace_takes_and_returns_float32_close_to_the_float32_unet(prior, threads, batch):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        traced = TracedUNet(prior.unet, compute_dtype=torch.bfloat16)
        x, t, ctx = _inputs(prior, batch, 11)
        with torch.no_grad():
            eager = prior.unet(x, t, encoder_hidden_states=ctx).sample
            out = traced(x, t, ctx)
        assert out.dtype == torch.float32 and out.shape == eager.shape
        # bfloat16 keeps 8 bits of mantissa: measured about 4e-3 on the bundled prior; a float32
        # trace would be at 1e-6, a wrong cast or layout at order 1
        assert 1e-4 < _relative_error(out, eager) < 2e-2
        assert next(prior.unet.parameters()).dtype == torch.float32  # the prior's own UNet is untouched
        assert next(traced._cast_unet.parameters()).dtype == torch.bfloat16
        traced.reset()
        assert traced._cast_unet is None and not traced._traces
    finally:
        torch.set_num_threads(before)


def test_the_trace_dtype_auto_follows_the_cpu_and_explicit_choices_are_kept(monkeypatch):
    from lift3d.guidance import traced_unet

    monkeypatch.setattr(traced_unet, "cpu_has_native_bf16", lambda: True)
    assert traced_unet.resolve_trace_dtype("auto") == torch.bfloat16
    monkeypatch.setattr(traced_unet, "cpu_has_native_bf16", lambda: False)
    assert traced_unet.resolve_trace_dtype("auto") == torch.float32
    assert traced_unet.resolve_trace_dtype("bfloat16") == torch.bfloat16
    assert traced_unet.resolve_trace_dtype("float32") == torch.float32


@pytest.mark.parametrize("choice,low,high", [("float32", 0.0, 1e-5), ("bfloat16", 1e-4, 2e-2)])
def test_guidance_runs_its_prior_in_the_configured_trace_dtype(choice, low, high):
    """Text and view guidance: ``cpu_trace_dtype`` decides the traced call's precision, measured
    against the eager float32 UNet."""
    from lift3d.config import parse
    from lift3d.guidance.sds import DiffusersSDSGuidance
    from lift3d.guidance.zero123 import Zero123Guidance

    for cls in (DiffusersSDSGuidance, Zero123Guidance):
        guidance = cls(parse(cls.Config, {"cpu_trace_dtype": choice}))
        p = guidance.prior.to(torch.device("cpu"))
        unet = p.unet
        size, ch = unet.config.sample_size, unet.config.in_channels
        g = torch.Generator().manual_seed(3)
        x, t = torch.randn(2, ch, size, size, generator=g), torch.tensor([250, 750])
        ctx = torch.randn(2, 1, unet.config.cross_attention_dim, generator=g)
        with torch.no_grad():
            err = _relative_error(p.denoise(x, t, ctx), unet(x, t, encoder_hidden_states=ctx).sample)
        assert low <= err < high, (cls.__name__, err)
