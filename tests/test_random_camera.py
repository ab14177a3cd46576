"""The training camera sampler: the laws it draws from (histograms), perturbations, ranks, resolution schedules."""

import math

import pytest
import torch

from lift3d.data.camera_math import spherical_to_position
from lift3d.data.random_camera import RandomCameraConfig, RandomCameraIterable, resolution_at


def draw(n_batches: int, rank: int = 0, **kw) -> list:
    torch.manual_seed(0)
    it = RandomCameraIterable(RandomCameraConfig(resolution=4.0, **kw), rank=rank)
    return [it.sample(i) for i in range(n_batches)]


def ks_distance(samples: torch.Tensor, cdf) -> float:
    """Kolmogorov-Smirnov distance between the samples' empirical CDF and ``cdf``."""
    x, _ = samples.double().sort()
    n = x.numel()
    f = cdf(x)
    upper = torch.arange(1, n + 1, dtype=torch.float64) / n
    return float(torch.maximum((upper - f).abs(), (f - upper + 1 / n).abs()).max())


LO, HI = -10.0, 60.0


def cdf_degrees(x):
    return ((x - LO) / (HI - LO)).clamp(0, 1)


def cdf_sphere(x):
    s = torch.sin(torch.deg2rad(x))
    return ((s - math.sin(math.radians(LO))) / (math.sin(math.radians(HI)) - math.sin(math.radians(LO)))).clamp(0, 1)


@pytest.mark.parametrize("prob", [0.0, 0.5, 1.0])
def test_elevation_follows_the_mix_of_degree_and_sphere_laws(prob):
    batches = draw(3000, elevation_sphere_prob=prob, batch_size=1, elevation_range=(LO, HI))
    elev = torch.cat([b.elevation for b in batches])
    law = lambda x: prob * cdf_sphere(x) + (1 - prob) * cdf_degrees(x)  # noqa: E731
    assert ks_distance(elev, law) < 0.03  # 1.36 / sqrt(3000) = 0.025 at the 5 % level
    # and the other laws are rejected (they differ by ~0.08 in sup norm here)
    other = 1.0 if prob < 0.5 else 0.0
    assert ks_distance(elev, lambda x: other * cdf_sphere(x) + (1 - other) * cdf_degrees(x)) > 0.035


def test_batch_uniform_azimuth_stratifies_each_batch():
    b = 4
    batches = draw(1000, batch_size=b, batch_uniform_azimuth=True)
    azim = torch.stack([x.azimuth for x in batches])  # (n, B)
    width = 360.0 / b
    for i in range(b):  # camera i lies in slice i, uniformly within it
        lo = -180.0 + i * width
        assert ((azim[:, i] >= lo) & (azim[:, i] <= lo + width)).all()
        assert ks_distance(azim[:, i], lambda x: ((x - lo) / width).clamp(0, 1)) < 0.05
    # pooled, it is uniform over the whole circle
    assert ks_distance(azim.flatten(), lambda x: ((x + 180) / 360).clamp(0, 1)) < 0.03
    # without stratification a batch often leaves a half of the circle unseen
    plain = torch.stack([x.azimuth for x in draw(1000, batch_size=b, batch_uniform_azimuth=False)])
    spread = lambda a: (a.max(1).values - a.min(1).values)  # noqa: E731
    assert (spread(azim) < 90).float().mean() == 0 and (spread(plain) < 90).float().mean() > 0.01


def test_camera_position_perturbation_is_uniform_in_its_box():
    p = 0.1
    batches = draw(500, batch_size=2, camera_perturb=p, center_perturb=0.0, up_perturb=0.0)
    offsets = torch.cat([b.c2w[:, :3, 3] - spherical_to_position(b.elevation, b.azimuth, b.distance) for b in batches])
    assert offsets.abs().max() <= p + 1e-6
    for d in range(3):
        assert ks_distance(offsets[:, d], lambda x: ((x + p) / (2 * p)).clamp(0, 1)) < 0.05
    # the nominal angles (read by view-dependent prompts) are the unperturbed ones
    none = draw(500, batch_size=2, camera_perturb=0.0, center_perturb=0.0, up_perturb=0.0)
    torch.testing.assert_close(torch.cat([b.azimuth for b in batches]), torch.cat([b.azimuth for b in none]))


def _principal_axis_miss(batch) -> torch.Tensor:
    """Distance from the origin to each camera's optical axis."""
    o, forward = batch.c2w[:, :3, 3], -batch.c2w[:, :3, 2]
    return (o - (o * forward).sum(-1, keepdim=True) * forward).norm(dim=-1)


def test_center_perturbation_is_gaussian_and_zero_means_looking_at_the_origin():
    exact = draw(200, batch_size=2, camera_perturb=0.0, center_perturb=0.0, up_perturb=0.0)
    assert max(float(_principal_axis_miss(b).max()) for b in exact) < 1e-5
    s = 0.2
    moved = draw(1500, batch_size=2, camera_perturb=0.0, center_perturb=s, up_perturb=0.0)
    miss = torch.cat([_principal_axis_miss(b) for b in moved])
    # the component of a 3-D Gaussian (std s) perpendicular to the axis is a 2-D Rayleigh: CDF 1 - exp(-r^2 / 2 s^2)
    assert ks_distance(miss, lambda r: 1 - torch.exp(-(r**2) / (2 * s**2))) < 0.04


def test_up_perturbation_rolls_the_camera_slightly():
    upright = draw(200, batch_size=2, camera_perturb=0.0, center_perturb=0.0, up_perturb=0.0)
    assert max(float(b.c2w[:, 2, 0].abs().max()) for b in upright) < 1e-6  # the right vector stays horizontal
    rolled = draw(1000, batch_size=2, camera_perturb=0.0, center_perturb=0.0, up_perturb=0.02)
    tilt = torch.cat([b.c2w[:, 2, 0] for b in rolled])
    assert 0.005 < float(tilt.std()) < 0.05 and float(tilt.abs().max()) < 0.2


def test_each_rank_draws_its_own_cameras_and_rank_zero_is_reproducible():
    a0, a0_again, a1 = draw(5, rank=0), draw(5, rank=0), draw(5, rank=1)
    for x, y, z in zip(a0, a0_again, a1):
        assert torch.equal(x.c2w, y.c2w)
        assert not torch.allclose(x.c2w, z.c2w)


def test_resolution_linear_and_milestone_schedules():
    linear = RandomCameraConfig(resolution=[[0, 32], [100, 64]])
    steps = RandomCameraConfig(resolution=[[0, 32], [100, 64], [200, 128]], resolution_schedule="milestones")
    assert [resolution_at(linear, s) for s in (0, 50, 100, 500)] == [32, 48, 64, 64]
    assert [resolution_at(steps, s) for s in (0, 99, 100, 199, 200, 10_000)] == [32, 32, 64, 64, 128, 128]
    it = RandomCameraIterable(steps)
    assert it.sample(99).height == 32 and it.sample(150).height == 64
