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
