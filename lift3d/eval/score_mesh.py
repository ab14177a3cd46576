"""``lift3d eval score``: put a mesh from any tool in the same table as lift3d's runs.

The mesh is aligned to the bundled world (:mod:`lift3d.eval.mesh_alignment`: centred and scaled
to the world's object size; an image-to-3D mesh onto the true object's box), rendered on the test
cameras of a preset with :mod:`lift3d.eval.mesh_turntable`, scored with :mod:`lift3d.eval.scores`,
and recorded as one row of ``results.jsonl`` in the output folder, which may be a new folder or
the folder of a suite (its report then shows the mesh as one more method).

Text-to-3D meshes are rendered on the bundled text preset's turntable. An image-to-3D mesh made
from a bundled example image (``image=``) is rendered on that image's orbit (the reference camera
and the same elevation, distance and field of view as ``configs/zero123-bundled.yaml``), under the
input's light and background, and scored like lift3d's image-to-3D runs (novel-view PSNR / SSIM,
back views, Janus) against the example's truth.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from lift3d.errors import InputError
from lift3d.eval.runner import SUITE, append_result
from lift3d.utils.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PRESET = ROOT / "configs" / "dreamfusion-bundled.yaml"
IMAGE_PRESET = ROOT / "configs" / "zero123-bundled.yaml"


def _cameras(preset: Path):
    from lift3d.config import load_mapping, parse
    from lift3d.data.random_camera import OrbitDataset
    from lift3d.experiment import ExperimentConfig

    cfg = parse(ExperimentConfig, load_mapping(preset, ["system.prompt_processor.prompt=unused"]))
    orbit = OrbitDataset(cfg.data, cfg.data.n_test_views)
    return [orbit[i] for i in range(len(orbit))], cfg.system.video_fps


def _image_cameras(image: Path, truth):
    """The test orbit of an image-to-3D run on ``image``, lit by the input's light."""
    import torch

    from lift3d.config import load_mapping, parse
    from lift3d.data.single_image import ReferenceOrbit
    from lift3d.experiment import ExperimentConfig

    cfg = parse(ExperimentConfig, load_mapping(IMAGE_PRESET, [f"data.image_path={image}", f"data.elevation_deg={truth.elevation_deg}",
                                                             f"data.azimuth_deg={truth.azimuth_deg}", f"data.camera_distance={truth.camera_distance}",
                                                             f"data.fovy_deg={truth.fovy_deg}"]))
    orbit = ReferenceOrbit(cfg.data, cfg.data.random_camera.n_test_views)
    cameras = [orbit[i] for i in range(len(orbit))]
    for cam in cameras:
        cam.light_position = torch.tensor([truth.light_position], dtype=cam.light_position.dtype).expand_as(cam.light_position).clone()
    return cameras, cfg.system.video_fps


def score_mesh(mesh_path: str | Path, prompt: str | None, out: str | Path, name: str | None = None, up: str = "auto",
               clip_model: str | None = None, preset: str | Path = DEFAULT_PRESET, align: str = "auto", yaw_deg: float = 0.0,
               image: str | Path | None = None) -> dict:
    """Align, render, score and record one mesh; returns its results row."""
    from lift3d.eval.mesh_alignment import align_mesh
    from lift3d.eval.mesh_turntable import load_coloured_mesh, render_turntable
    from lift3d.eval.scores import image_scores, turntable_scores
    from lift3d.eval.suite import image_caption
    from lift3d.priors.world.catalog import parse_caption
    from lift3d.priors.world.examples import read_truth
    from lift3d.utils.images import to_uint8, write_video

    out = Path(out)
    # a suite's folder (or one of earlier scores) is fine: the mesh joins its table
    if not (out / SUITE).is_file() and out.exists() and any(out.iterdir()):
        raise InputError(f"{out} is not empty and is not a lift3d eval folder; choose a new or empty --out, or a suite's folder")
    truth = None
    if image is not None:
        image = Path(image)
        truth = read_truth(image)
        if truth is None:
            raise InputError(f"{image} has no JSON sidecar with its truth (a bundled example image has one); "
                             "score the mesh by --prompt instead")
        prompt = prompt or image_caption(image)
    if not prompt or not prompt.strip():
        raise InputError("--prompt is empty; give the prompt the mesh was made for, e.g. --prompt \"a red house\"")
    parsed = parse_caption(prompt)
    if parsed is None and not clip_model:
        raise InputError(f"{prompt!r} names no object of the bundled world, so only a CLIP score applies; add --clip-model <local CLIP directory>")
    kind = truth.kind if truth is not None else (parsed[1] if parsed else None)
    mesh, alignment = align_mesh(load_coloured_mesh(mesh_path, up), kind, align, yaw_deg, image_to_3d=truth is not None)
    t0 = time.perf_counter()
    if truth is not None:
        cameras, fps = _image_cameras(image, truth)
        tt = render_turntable(mesh, cameras, background=float(sum(truth.background) / 3))
        metrics = image_scores(tt, image, mesh.mesh)
    else:
        cameras, fps = _cameras(Path(preset))
        tt = render_turntable(mesh, cameras)
        metrics = turntable_scores(tt, prompt, mesh.mesh, clip_model)
    name = name or re.sub(r"[^A-Za-z0-9_-]+", "-", Path(mesh_path).stem)
    subject = image.stem if image is not None else prompt
    run_id = f"external__{name}__{re.sub(r'[^A-Za-z0-9]+', '-', subject).strip('-').lower()}"
    frames_dir = out / "runs" / run_id / "turntable"
    frames_dir.mkdir(parents=True, exist_ok=True)
    import imageio.v3 as iio

    frames = [to_uint8(img.permute(1, 2, 0)) for img in tt.rgb]
    for i, frame in enumerate(frames):
        iio.imwrite(frames_dir / f"{i:04d}.png", frame, extension=".png")
    video = frames_dir.with_suffix(".mp4")
    write_video(video, frames, fps=fps)
    if not (out / SUITE).is_file():
        atomic_write_text(out / SUITE, json.dumps({"name": "external meshes", "suite": None}, indent=2))
    row = {
        "run_id": run_id, "method": name, "prompt": prompt, "seed": 0, "hparams": {}, "status": "ok",
        "mesh_file": str(Path(mesh_path).resolve()), "alignment": alignment.to_json(),
        "wall_seconds_scoring": time.perf_counter() - t0, "metrics": metrics,
        "artefacts": {"turntable_frames": str(frames_dir.resolve()), "turntable_video": str(video.resolve()), "mesh": str(Path(mesh_path).resolve())},
    }
    if image is not None:
        row["image"] = str(image.resolve())
    append_result(out, row)
    return row
