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


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_prediction_target_is_what_to_epsilon_inverts(prediction_type):
    from lift3d.guidance.noise_prediction import to_epsilon
    from lift3d.priors.training import prediction_target

    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(3, 3, 4, 4, generator=g) * 2 - 1, torch.randn(3, 3, 4, 4, generator=g)
    a = torch.tensor([0.999, 0.5, 0.01]).view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    # a perfect prior of each type gives back the true noise
    torch.testing.assert_close(to_epsilon(prediction_target(x0, noise, a, prediction_type), x_t, a, prediction_type), noise, atol=1e-4, rtol=1e-4)


def test_view_prior_training_writes_its_objective_and_dropout_into_the_prior(tmp_path):
    import json

    from lift3d.guidance.view_prior import load_view_prior
    from lift3d.priors.view_prior.train import main

    threads = torch.get_num_threads()
    try:
        main(["--out", str(tmp_path / "run"), "--steps", "2", "--batch-size", "2", "--pairs", "8", "--threads", "1",
              "--sample-every", "2", "--sample-steps", "2", "--prediction-type", "sample", "--uncond-drop", "context"])
        with pytest.raises(SystemExit, match="was trained with"):  # resuming with another objective is refused
            main(["--out", str(tmp_path / "run"), "--steps", "3", "--pairs", "8", "--threads", "1", "--prediction-type", "v_prediction"])
    finally:
        torch.set_num_threads(threads)
    prior = load_view_prior(tmp_path / "run" / "prior")
    assert prior.prediction_type == "sample" and prior.unconditional_keeps_reference
    rows = (tmp_path / "run" / "reference_use.csv").read_text().split()
    assert len(rows) == 1 and rows[0].startswith("2,") and len(rows[0].split(",")) == 5
    assert json.loads((tmp_path / "run" / "prior" / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "sample"


def test_reference_use_tells_a_prior_that_copies_its_reference_from_one_that_ignores_it():
    from lift3d.priors.view_prior.diagnostics import reference_use

    class Prior:
        """Predicts x0 = its reference (copying) or grey (ignoring), as ε, like a ViewPrior."""

        def __init__(self, copies: bool):
            self.copies = copies
            self.alphas_cumprod = torch.linspace(0.9999, 0.001, 1000)

        def conditioning(self, reference, camera):
            return None, reference * 2 - 1

        def conditional_noise(self, x_t, t, context, concat):
            a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
            x0 = concat if self.copies else torch.zeros_like(concat)
            return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 8, 8, generator=g)
    camera = torch.zeros(4, 4)
    copying = reference_use(Prior(True), images, images, camera)
    ignoring = reference_use(Prior(False), images, images, camera)
    assert copying.right < 1e-5 and copying.wrong > 0.2
    assert ignoring.right == pytest.approx(ignoring.wrong)
