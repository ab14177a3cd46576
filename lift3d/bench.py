"""Benchmarks on this machine: ``python -m lift3d.bench`` (or ``python scripts/bench.py``) prints a table.

* hash grid (16 levels x 2 features, 2^19 table) forward+backward on 262,144 points;
* one DreamFusion training step split into render forward, guidance, backward, optimizer;
* samples evaluated per ray with and without the occupancy grid once a blob has formed;
* the PyTorch mesh rasterizer on a 20k-face sphere at 256x256 (rasterize + interpolate + antialias);
* one guidance evaluation (conditional + unconditional, batch 2) of each bundled prior;
* peak resident memory;
* with ``--gpu-presets``: a training step and a test frame of ``dreamfusion-if.yaml`` (CPU smoke run);
* with ``--main-job``: the README's main job and its export as whole commands, with the split of
  their wall time (start-up, training, validation, test turntable, video; export steps).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import torch


def _timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_hash_grid(n_points: int = 262144, repeats: int = 5) -> dict:
    """Forward + backward of the default hash grid on random points, with the backend a run picks
    (``auto``: the C++ kernels on a CPU) and with the PyTorch reference."""
    from lift3d.encodings.hash_grid import HashGridConfig, HashGridEncoding

    rows = {}
    x = torch.rand(n_points, 3)
    for implementation in ("auto", "torch"):
        enc = HashGridEncoding(HashGridConfig(n_levels=16, n_features_per_level=2, log2_hashmap_size=19, implementation=implementation))

        def step():
            enc.table.grad = None
            enc(x).square().sum().backward()

        t = _timeit(step, repeats)
        if implementation == "auto":
            rows[f"hash grid fwd+bwd, 262,144 points, {enc.backend} (s)"] = t
            rows["hash grid points/s (fwd+bwd)"] = n_points / t
        else:
            rows["hash grid fwd+bwd, 262,144 points, PyTorch reference (s)"] = t
    return rows


def _system(config: str, overrides: list[str]):
    from lift3d.config import load_mapping, parse
    from lift3d.experiment import ExperimentConfig
    from lift3d.registry import find
    from lift3d.systems.base import BaseLift3DSystem
    import lightning.pytorch as pl

    cfg = parse(ExperimentConfig, load_mapping(config, overrides))
    dm = find(cfg.data_type, pl.LightningDataModule)(cfg.data)
    system = find(cfg.system_type, BaseLift3DSystem)(cfg.system)
    return cfg, dm, system


def bench_training_step(config: str, overrides: list[str], steps: int, shading: str | None = None, eval_frame: bool = False) -> dict:
    """Median time of each part of a training step (``shading`` fixes the material's shading), the
    samples per ray evaluated, and with ``eval_frame`` the time of one test frame."""
    cfg, dm, system = _system(config, overrides)
    system.train()
    if shading is not None:
        system.material.choose_shading = lambda: setattr(system.material, "shading", shading)
    opt = system.make_optimizer()  # a step's cost; the learning-rate schedule does not change it
    parts = {"render forward": [], "guidance": [], "backward": [], "optimizer": []}
    samples = []
    for step in range(steps + 2):
        for m in system.lift3d_modules():
            m.update_step(step)
        batch = dm.train_dataset.sample(step)
        t0 = time.perf_counter()
        out = system(batch, need_normal=system.loss_weight("orient") > 0)
        t1 = time.perf_counter()
        g = system.guidance(out.comp_rgb, system.prompt_processor.embeddings, batch)
        losses = {**g.losses, **system.regularizers(out)}
        loss = sum(system.loss_weight(k) * v for k, v in losses.items() if system.loss_weight(k) > 0)
        t2 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if step >= 2:  # skip warm-up
            for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[key].append(value)
            samples.append(out.samples_evaluated / (batch.size * batch.height * batch.width))
    res = {f"step: {k} (ms)": 1000 * statistics.median(v) for k, v in parts.items()}
    res["step: total (ms)"] = sum(res.values())
    res["step: resolution x batch"] = f"{batch.height}x{batch.width} x {batch.size}"
    if eval_frame:  # the samples per ray, and test-turntable frames with their normal images
        res["step: samples per ray evaluated"] = statistics.mean(samples)
        system.eval()
        times = []
        for i in range(4):  # the mean of the first frames of the turntable, as a turntable costs them
            view = dm.test_dataset[i]
            t0 = time.perf_counter()
            with torch.no_grad():
                system._eval_images(view)
            times.append(time.perf_counter() - t0)
        res[f"test frame {view.height}x{view.width} (s)"] = statistics.mean(times)
    return res


def bench_occupancy(config: str, overrides: list[str]) -> dict:
    cfg, dm, system = _system(config, overrides)
    renderer = system.renderer
    renderer.eval()
    batch = dm.val_dataset[0]
    with torch.no_grad():
        renderer.cfg.estimator = "none"
        full = renderer(batch)
        renderer.occupancy.update(system.geometry.forward_density)
        renderer.cfg.estimator = "occgrid"
        skip = renderer(batch)
    rays = batch.height * batch.width
    return {
        "samples per ray, no grid": full.samples_evaluated / rays,
        "samples per ray, occupancy grid (blob)": skip.samples_evaluated / rays,
        "occupancy grid reduction (x)": full.samples_evaluated / max(skip.samples_evaluated, 1),
        "max opacity difference grid vs none": float((full.opacity - skip.opacity).abs().max()),
    }


def bench_rasterizer(resolution: int = 256, repeats: int = 5) -> dict:
    """Frames per second of the PyTorch rasterizer on an icosphere with 20,480 faces."""
    import trimesh

    from lift3d.data.camera_math import look_at, projection_matrix, spherical_to_position
    from lift3d.renderers.rasterizer import MeshRasterizer

    mesh = trimesh.creation.icosphere(subdivisions=5, radius=0.8)
    verts = torch.tensor(mesh.vertices, dtype=torch.float32)
    faces = torch.tensor(mesh.faces, dtype=torch.long)
    c2w = look_at(spherical_to_position(torch.tensor([15.0]), torch.tensor([0.0]), torch.tensor([2.5])))
    mvp = projection_matrix(torch.tensor([45.0])) @ torch.linalg.inv(c2w)
    clip = (torch.cat([verts, torch.ones(len(verts), 1)], -1) @ mvp[0].T)[None]
    colours = (verts + 1) / 2
    r = MeshRasterizer()

    def frame():
        rast = r.rasterize(clip, faces, (resolution, resolution))
        r.antialias(r.interpolate(colours, rast, faces), rast, clip, faces)

    seconds = _timeit(frame, repeats)
    return {f"rasterizer {len(faces):,} faces at {resolution}x{resolution} (frames/s)": 1.0 / seconds}


def bench_prior_guidance(repeats: int = 30) -> dict:
    """Median milliseconds of one classifier-free-guidance UNet call (cond + uncond = batch 2)."""
    from lift3d.guidance.diffusers_prior import load_frozen_prior
    from lift3d.guidance.view_prior import load_view_prior
    from lift3d.priors import BUNDLED

    text = load_frozen_prior(BUNDLED["text"]).to(torch.device("cpu"))  # channels-last, as guidance moves it
    size, ch = text.sample_size, text.in_channels
    ctx = torch.randn(2, 10, text.unet.config.cross_attention_dim)

    def text_eval():
        with torch.no_grad():
            text.denoise(torch.randn(2, ch, size, size), torch.tensor([500, 500]), ctx)  # as guidance calls it

    view = load_view_prior(BUNDLED["view"]).to(torch.device("cpu"))  # as guidance places it
    x = torch.randn(1, 3, view.image_size, view.image_size)
    context, concat = view.conditioning(x.clamp(0, 1), torch.zeros(1, 4))

    def view_eval():
        with torch.no_grad():
            view.predict_noise(x, torch.tensor([500]), context, concat, 3.0)

    return {
        "text prior guidance eval, batch 2 (ms)": 1000 * _timeit(text_eval, repeats),
        "view prior guidance eval, batch 2 (ms)": 1000 * _timeit(view_eval, repeats),
    }


def bench_gpu_preset_smoke(preset: str = "dreamfusion-if.yaml", steps: int = 3) -> dict:
    """A real-prior preset as a CPU smoke run: median training step and one test frame (with normals).

    The preset's own settings (64×64 renders, 512 samples per ray, 2^19 × 16-level hash grid,
    analytic normals, orientation loss) from its first steps, the blob it starts from; its default
    prior (the bundled text prior) stands in for the real one, so the guidance share is small.
    """
    config = str(Path(__file__).parents[1] / "configs" / preset)
    res = bench_training_step(config, ["system.prompt_processor.prompt=a red cube"], steps, eval_frame=True)
    name = preset.removesuffix(".yaml")
    frame = next(k for k in res if k.startswith("test frame"))
    return {f"{name}: training step (s)": res["step: total (ms)"] / 1000,
            f"{name}: samples per ray, training": res["step: samples per ray evaluated"], f"{name}: {frame}": res[frame]}


def bench_main_job(config: str, prompt: str, out: Path) -> dict:
    """The README's main job and its export, whole commands as a user runs them, with their splits.

    Rows: the wall time of each command, the phases ``launch.py`` records in ``train_info.json``
    (start-up, training, validation, test turntable, video, checkpoint) and the export's steps
    from ``export.json``.
    """
    import json
    import subprocess
    import sys

    launch = Path(__file__).parents[1] / "launch.py"
    root = out / "main_job"
    t0 = time.perf_counter()
    train = subprocess.run([sys.executable, str(launch), "--config", config, "--train", f"system.prompt_processor.prompt={prompt}",
                            f"exp_root_dir={root}", "trainer.enable_progress_bar=false"], capture_output=True, text=True)
    rows: dict = {"main job: whole command (s)": time.perf_counter() - t0}
    if train.returncode != 0:
        rows["main job: failed"] = (train.stderr.strip().splitlines() or ["?"])[-1]
        return rows
    trial = max(root.glob("*/*/train_info.json"), key=lambda p: p.stat().st_mtime).parent
    info = json.loads((trial / "train_info.json").read_text())
    for name, sec in info["seconds"].items():
        rows[f"main job: {name} (s)"] = sec
    rows["main job: training (ms/step)"] = 1000 * info["seconds"]["training"] / max(info["steps"], 1)
    t0 = time.perf_counter()
    export = subprocess.run([sys.executable, str(launch), "--config", str(trial / "configs" / "parsed.yaml"), "--export",
                             f"resume={trial}"], capture_output=True, text=True)
    rows["export: whole command (s)"] = time.perf_counter() - t0
    if export.returncode == 0:
        report = json.loads(next(trial.glob("save/it*-export/export.json")).read_text())
        for name, sec in report["timings_seconds"].items():
            rows[f"export: {name} (s)"] = sec
        rows["export: silhouette IoU vs NeRF"] = report["silhouette_iou_vs_nerf"]["mean"]
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(Path(__file__).parents[1] / "configs" / "dreamfusion-bundled.yaml"))
    ap.add_argument("--prompt", default="a red house")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prior", default=None, help="prior directory (default: the preset's, i.e. the bundled prior)")
    ap.add_argument("--main-job", action="store_true", help="also run the README's main job and its export (about 90 s) and print their splits")
    ap.add_argument("--out", type=Path, default=Path("bench_runs/bench"), help="where --main-job writes its run")
    ap.add_argument("--gpu-presets", action="store_true", help="also time a training step and a test frame of dreamfusion-if.yaml (about a minute)")
    args = ap.parse_args(argv)
    from lift3d.utils.library_logs import quiet_libraries

    quiet_libraries()  # library notices stay out of the table
    torch.set_num_threads(args.threads)
    overrides = [f"system.prompt_processor.prompt={args.prompt}", "system.material.ambient_only_steps=0"]
    if args.prior:
        overrides.append(f"system.guidance.pretrained_model_name_or_path={args.prior}")
    rows: dict = {"torch threads": args.threads}
    rows.update(bench_hash_grid())
    rows.update(bench_training_step(args.config, overrides, args.steps))
    for shading in ("diffuse", "albedo"):  # a Lambert step builds analytic normals (second order); an albedo step does not
        step = bench_training_step(args.config, overrides, args.steps, shading=shading)
        rows[f"step: total, {shading} shading only (ms)"] = step["step: total (ms)"]
    rows.update(bench_occupancy(args.config, overrides))
    rows.update(bench_rasterizer())
    rows.update(bench_prior_guidance())
    rows["peak resident memory (MB)"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.gpu_presets:
        rows.update(bench_gpu_preset_smoke())
    if args.main_job:
        rows.update(bench_main_job(args.config, args.prompt, args.out))
    width = max(len(k) for k in rows)
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for key, value in rows.items():
        text = f"{value:,.3f}" if isinstance(value, float) else str(value)
        print(f"| {key.ljust(width)} | {text} |")


if __name__ == "__main__":
    main()
