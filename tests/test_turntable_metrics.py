"""Turntable metrics against the world's ground truth: aligned silhouette IoU, classifier accuracy, Janus rate."""

import torch

from lift3d.config import load_mapping, parse
from lift3d.data.random_camera import OrbitDataset
from lift3d.eval.turntable import Turntable, align_to, classifier_accuracy, ground_truth_turntable, janus_rate, silhouette_iou
from lift3d.experiment import ExperimentConfig
from run_helpers import ROOT


def turntable_of(colour: str, kind: str, n: int = 12) -> Turntable:
    """A turntable whose frames are the world's own renders from the bundled preset's test cameras."""
    cfg = parse(ExperimentConfig, load_mapping(ROOT / "configs/dreamfusion-bundled.yaml",
                                               ["system.prompt_processor.prompt=x", f"data.n_test_views={n}", "data.eval_resolution=32"]))
    cams = [OrbitDataset(cfg.data, n)[i] for i in range(n)]
    tt = Turntable(
        rgb=torch.zeros(n, 3, 32, 32), opacity=torch.zeros(n, 32, 32),
        elevation=torch.cat([c.elevation for c in cams]), azimuth=torch.cat([c.azimuth for c in cams]),
        distance=torch.cat([c.distance for c in cams]), fovy=torch.cat([c.fovy for c in cams]),
        light_position=torch.cat([c.light_position for c in cams]),
    )
    gt = ground_truth_turntable(colour, kind, tt)
    tt.rgb, tt.opacity = gt.rgb.permute(0, 3, 1, 2), gt.mask.float()
    return tt


def test_the_ground_truth_scores_perfectly_and_a_sphere_does_not():
    tt = turntable_of("red", "house")
    gt = ground_truth_turntable("red", "house", tt)
    assert silhouette_iou(tt.opacity, gt.mask) == 1.0
    assert silhouette_iou(turntable_of("red", "sphere").opacity, gt.mask) < 0.9
    acc = classifier_accuracy(tt, "red", "house")
    assert acc["colour"] >= 0.9 and acc["kind"] >= 0.9
    assert classifier_accuracy(tt, "blue", "mug")["both"] == 0.0


def test_alignment_undoes_a_shift_and_a_scale():
    mask = torch.zeros(64, 64)
    mask[20:40, 24:36] = 1.0  # a 20 x 12 box
    moved = torch.zeros(64, 64)
    moved[5:15, 40:46] = 1.0  # half the size, elsewhere
    aligned = align_to(moved, mask > 0.5)
    inter = (aligned & (mask > 0.5)).sum().item()
    union = (aligned | (mask > 0.5)).sum().item()
    assert inter / union > 0.85
    assert (moved > 0.5).logical_and(mask > 0.5).sum() == 0  # unaligned, they do not even overlap


def test_janus_rate_sees_a_front_feature_on_the_back():
    tt = turntable_of("white", "snowman")
    gt = ground_truth_turntable("white", "snowman", tt)
    honest = janus_rate(tt, "snowman", gt)
    assert honest["janus"] == 0.0 and honest["front_feature_seen"] >= 0.5
    # a two-faced object: every view shows what the front view shows
    front = int(torch.argmin(tt.azimuth.abs()))
    two_faced = Turntable(**{**tt.__dict__, "rgb": tt.rgb[front].expand_as(tt.rgb).clone(), "opacity": tt.opacity[front].expand_as(tt.opacity).clone()})
    assert janus_rate(two_faced, "snowman", gt)["janus"] == 1.0
    assert janus_rate(tt, "sphere", gt) is None
