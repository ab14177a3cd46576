"""The procedural world: catalogue, captions, ground truth."""

import numpy as np
import pytest
import torch

from lift3d.priors.world.catalog import ASYMMETRIC_KINDS, COLOURS, HELD_OUT, KINDS, caption, parse_caption, training_pairs
from lift3d.priors.world.ground_truth import ground_truth_mesh
from lift3d.priors.world.shapes import object_sdf


def test_catalogue_sizes_and_held_out_pairs():
    assert len(KINDS) >= 8 and len(COLOURS) >= 8 and len(ASYMMETRIC_KINDS) >= 3
    pairs = training_pairs()
    assert not set(HELD_OUT) & set(pairs)
    assert len(pairs) == len(KINDS) * len(COLOURS) - len(HELD_OUT)
    assert parse_caption(caption("red", "house") + ", back view") == ("red", "house")


@pytest.mark.parametrize("kind", KINDS)
def test_objects_fit_the_scene_and_have_volume(kind):
    mesh = ground_truth_mesh(kind, resolution=64)
    assert mesh.is_watertight
    assert mesh.volume > 0.02
    assert np.abs(mesh.vertices).max() < 0.95  # inside the scene box with a margin


@pytest.mark.parametrize("kind", ASYMMETRIC_KINDS)
def test_asymmetric_objects_have_their_feature_in_front(kind):
    """The accent feature (door, nose, handle) lies on the +x side: azimuth 0 sees it."""
    lin = torch.linspace(-0.9, 0.9, 48)
    pts = torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), -1).reshape(-1, 3)
    d, accent = object_sdf(kind, pts)
    feature = pts[(d < 0) & accent]
    assert len(feature) > 20
    assert feature[:, 0].mean() > 0.2
