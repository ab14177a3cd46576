"""The bundled priors' training scripts: the loss, and seeded, resumable runs."""

import pytest
import torch
import torch.nn.functional as F

from lift3d.priors.training import epsilon_loss, keep_training


def test_epsilon_loss_without_gamma_is_plain_mse():
    g = torch.Generator().manual_seed(0)
    pred, noise = torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)
    alphas = torch.tensor([0.01, 0.3, 0.9, 0.999])
    assert torch.equal(epsilon_loss(pred, noise, alphas), F.mse_loss(pred, noise))


def test_min_snr_weight_damps_only_the_nearly_clean_timesteps():
    noise = torch.zeros(3, 3, 4, 4)
    pred = torch.stack([torch.full((3, 4, 4), v) for v in (1.0, 2.0, 3.0)])  # per-sample errors 1, 4, 9
    alphas = torch.tensor([0.5, 0.8, 0.99])  # SNR 1, 4, 99
    gamma = 5.0
    expected = (1.0 * 1 + 4.0 * 1 + 9.0 * gamma / 99.0) / 3  # SNR below gamma: weight 1; above: gamma / SNR
    assert epsilon_loss(pred, noise, alphas, gamma).item() == pytest.approx(expected, rel=1e-6)
    assert epsilon_loss(pred, noise, alphas, gamma) < F.mse_loss(pred, noise)


def test_keep_training_stops_at_the_total_or_after_this_invocations_budget():
    assert keep_training(3, 10, start=3, stop_after=None)
    assert not keep_training(10, 10, start=0, stop_after=None)
    assert keep_training(4, 10, start=3, stop_after=2) and not keep_training(5, 10, start=3, stop_after=2)


def _state(path):
    return torch.load(path / "state.pt", weights_only=False)


def test_text_prior_training_is_seeded_and_resumes_exactly(tmp_path):
    from lift3d.guidance.diffusers_prior import load_frozen_prior
    from lift3d.priors.text_prior.train import main

    threads = torch.get_num_threads()
    common = ["--steps", "4", "--batch-size", "2", "--images", "8", "--threads", "1", "--sample-every", "1000", "--sample-steps", "2", "--snr-gamma", "5"]
    try:
        main(["--out", str(tmp_path / "straight"), *common])
        main(["--out", str(tmp_path / "split"), *common, "--stop-after", "2"])
        stopped = _state(tmp_path / "split")
        assert stopped["step"] == 2 and not (tmp_path / "split" / "prior").exists()
        main(["--out", str(tmp_path / "split"), *common])  # the same command resumes at step 2
    finally:
        torch.set_num_threads(threads)
    straight, split = _state(tmp_path / "straight"), _state(tmp_path / "split")
    assert split["step"] == straight["step"] == 4
    for key in ("unet", "ema_unet", "text_encoder"):
        for name, value in straight[key].items():
            assert torch.equal(value, split[key][name]), f"{key}.{name} differs after resuming"
    changed = [not torch.equal(stopped["unet"][k], v) for k, v in split["unet"].items()]
    assert any(changed), "steps 3-4 did not update the weights"
    prior = load_frozen_prior(tmp_path / "split" / "prior")  # the export loads like any pixel prior
    assert prior.vae is None and prior.unet.config.sample_size == 32
    assert (tmp_path / "split" / "samples" / "step000004.png").exists()
