"""The metrics of an evaluation run, for a lift3d trial or any mesh rendered on the same cameras.

Against the bundled world's ground truth (prompts ``a <colour> <object>``):

- ``r_precision``: evaluation-classifier R-precision of the turntable frames: a frame counts
  when, among all captions of the world, the caption scored highest by the classifier
  (log p(colour) + log p(object)) is the prompt's;
- ``silhouette_iou``: centre-and-scale-aligned silhouette IoU over the turntable cameras
  (:func:`lift3d.eval.turntable.silhouette_iou`);
- ``chamfer`` and ``volume_iou`` of the exported mesh against the ground-truth mesh
  (:mod:`lift3d.eval.mesh_metrics`);
- ``janus`` (asymmetric objects): fraction of back views showing the front feature.

For any prompt, with a local CLIP model: ``clip_score`` (:mod:`lift3d.eval.clip_score`).

Image-to-3D runs of a bundled example image are scored against that example's truth
(:func:`image_scores`: novel-view PSNR / SSIM and the metrics above).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from lift3d.eval.turntable import Turntable, ground_truth_turntable, janus_rate, load_turntable, silhouette_iou
from lift3d.priors.world.catalog import KINDS, parse_caption


@torch.no_grad()
def r_precision(tt: Turntable, colour: str, kind: str, classifier=None) -> float:
    """Fraction of frames whose top-ranked world caption (by the evaluation classifier) is ``a <colour> <kind>``."""
    from lift3d.eval.world_classifier import COLOUR_NAMES, load_classifier

    clf = classifier or load_classifier()
    frames = F.interpolate(tt.rgb, (32, 32), mode="bilinear", align_corners=False, antialias=True) if tt.rgb.shape[-1] != 32 else tt.rgb
    k_logits, c_logits, _ = clf(frames)
    scores = c_logits.log_softmax(-1)[:, :, None] + k_logits.log_softmax(-1)[:, None, :]  # (N, colours, kinds)
    target = COLOUR_NAMES.index(colour) * len(KINDS) + KINDS.index(kind)
    return float((scores.flatten(1).argmax(-1) == target).float().mean())


def world_scores(tt: Turntable, prompt: str, mesh=None) -> dict[str, float]:
    """Metrics against the bundled world's ground truth; empty when the prompt names no world object."""
    parsed = parse_caption(prompt)
    if parsed is None:
        return {}
    colour, kind = parsed
    gt = ground_truth_turntable(colour, kind, tt)
    scores = {"r_precision": r_precision(tt, colour, kind), "silhouette_iou": silhouette_iou(tt.opacity, gt.mask)}
    janus = janus_rate(tt, kind, gt)
    if janus is not None:
        scores["janus"] = janus["janus"]
    if mesh is not None:
        scores |= mesh_scores(mesh, kind)
    return scores


def mesh_scores(mesh, kind: str) -> dict[str, float]:
    """Chamfer distance and volume IoU of a mesh (trimesh, world frame) against the true object's."""
    from lift3d.eval.mesh_metrics import compare_meshes
    from lift3d.priors.world.ground_truth import ground_truth_mesh
    from lift3d.priors.world.shapes import object_sdf

    def inside(points):
        return (object_sdf(kind, torch.as_tensor(points, dtype=torch.float32))[0] < 0).numpy()

    return compare_meshes(mesh, ground_truth_mesh(kind), inside)


def image_scores(tt: Turntable, image: str | Path, mesh=None) -> dict[str, float]:
    """Metrics of an image-to-3D result against the bundled example's truth (its JSON sidecar): novel-view
    and back-view PSNR / SSIM, silhouette IoU without alignment (the input camera fixes the placement),
    Janus rate, R-precision of the caption, and the mesh's Chamfer / volume IoU. Empty without a sidecar."""
    from lift3d.eval.image_to_3d import score_turntable
    from lift3d.priors.world.examples import read_truth

    truth = read_truth(Path(image))
    if truth is None:
        return {}
    scores = score_turntable(tt, truth) | {"r_precision": r_precision(tt, truth.colour, truth.kind)}
    if mesh is not None:
        scores |= mesh_scores(mesh, truth.kind)
    return scores


def turntable_scores(tt: Turntable, prompt: str, mesh=None, clip_model: str | Path | None = None) -> dict[str, float]:
    """World metrics (where the prompt is a world caption) and the CLIP score (where a model is given)."""
    scores = world_scores(tt, prompt, mesh)
    if clip_model:
        from lift3d.eval.clip_score import clip_score

        scores["clip_score"] = clip_score(tt.rgb, prompt, clip_model)
    return scores


def score_run(trial: Path, prompt: str, mesh_path: Path | None, clip_model: str | None, image: str | None = None) -> dict[str, float]:
    """Metrics of a trained trial from its test turntable and exported mesh; an image-to-3D run
    (``image``) is scored against its input's truth (:func:`image_scores`)."""
    mesh = None
    if mesh_path is not None:
        from lift3d.eval.mesh_turntable import load_coloured_mesh

        mesh = load_coloured_mesh(mesh_path).mesh  # a GLB is +y up; back into the world frame
    tt = load_turntable(trial)
    if image is None:
        return turntable_scores(tt, prompt, mesh, clip_model)
    scores = image_scores(tt, image, mesh)
    if clip_model:
        from lift3d.eval.clip_score import clip_score

        scores["clip_score"] = clip_score(tt.rgb, prompt, clip_model)
    return scores

