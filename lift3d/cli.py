"""The command line: ``python launch.py`` and the ``lift3d`` console script are this.

    lift3d --config configs/dreamfusion-bundled.yaml --train system.prompt_processor.prompt="a red house"
    lift3d --config outputs/<name>/<trial>/configs/parsed.yaml --test resume=outputs/<name>/<trial>
    lift3d eval suites/bundled-text.yaml --out evals/run1     (see lift3d.eval.cli)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from lift3d.errors import Lift3DError, RunError


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lift3d",
        description="Text- and image-to-3D by score distillation. Overrides are key=value pairs, e.g. "
        'system.prompt_processor.prompt="a red house" trainer.max_steps=500',
    )
    ap.add_argument("--config", required=True, help="YAML preset, or a trial's configs/parsed.yaml")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--train", action="store_true", help="optimise, then render the test turntable")
    mode.add_argument("--validate", action="store_true", help="render the validation views of a checkpoint")
    mode.add_argument("--test", action="store_true", help="render the test turntable (PNG frames + mp4) of a checkpoint")
    mode.add_argument("--export", action="store_true", help="export a mesh of a checkpoint into the trial's save/ folder")
    ap.add_argument("--gpu", default="auto", help="'auto' (CUDA when present, else CPU), 'cpu', or GPU ids like 0 or 0,1")
    ap.add_argument("--threads", type=int, default=None, metavar="N",
                    help="CPU threads (default: the cores, shared with other lift3d runs alive on this machine)")
    ap.add_argument("--plugin", action="append", default=[], metavar="FILE.py", help="import a file that registers modules (repeatable)")
    ap.add_argument("--then", action="append", default=[], metavar="CONFIG",
                    help="with --train: after this run, train CONFIG from it (system.geometry_convert_from=<this trial>) with "
                         "the same overrides; repeatable, e.g. the stages of a multi-stage method in order")
    ap.add_argument("overrides", nargs="*", help="config overrides key=value")
    return ap


PENDING_TRIAL = "<the previous stage's trial>"
"""Placeholder source of a chained stage while the chain's configs are checked before any run."""


def check_chain(stages: list[str], overrides: list[str]) -> None:
    """Parse every later stage's config (as it will be run) before the first stage starts."""
    from lift3d.config import explicit_keys, load_mapping, override_keys, parse
    from lift3d.experiment import ExperimentConfig

    for config in stages:
        stage_overrides = [*overrides, f"system.geometry_convert_from={PENDING_TRIAL}"]
        try:
            with explicit_keys(override_keys(stage_overrides)):
                parse(ExperimentConfig, load_mapping(config, stage_overrides))
        except Lift3DError as exc:
            raise type(exc)("\n".join(f"--then {config}: {line}" for line in str(exc).splitlines())) from exc


def _trial_tag(cfg) -> str:
    if cfg.tag:
        return cfg.tag
    image = getattr(cfg.data, "image_path", "")
    prompt = getattr(getattr(cfg.system, "prompt_processor", None), "prompt", "") or (Path(image).stem if image else "") or "run"
    return re.sub(r"[^A-Za-z0-9_-]+", "_", prompt.strip()).strip("_")[:80] or "run"


def resolve_resume(resume: str | None) -> tuple[Path | None, Path | None]:
    """(checkpoint file, its trial directory or None) for ``resume=``."""
    if not resume:
        return None, None
    path = Path(resume)
    if path.is_dir():
        ckpt = path / "ckpts" / "last.ckpt"
        if not ckpt.is_file():
            raise RunError(f"no checkpoint in {path}: {ckpt} does not exist; pass a trial directory that has trained, or a .ckpt file")
        return ckpt, path
    if not path.is_file():
        raise RunError(f"resume={resume}: no such checkpoint or trial directory; pass an existing .ckpt file or trial directory")
    trial = path.parent.parent if path.parent.name == "ckpts" and (path.parent.parent / "configs").is_dir() else None
    return path, trial


def _accelerator(gpu: str) -> tuple[str, object]:
    import torch

    if gpu == "auto":
        return ("gpu", "auto") if torch.cuda.is_available() else ("cpu", 1)
    if gpu == "cpu":
        return "cpu", 1
    ids = [int(x) for x in gpu.split(",") if x.strip()]
    if not torch.cuda.is_available():
        raise RunError(f"--gpu {gpu}: no CUDA device is available; use --gpu cpu or --gpu auto")
    return "gpu", ids


_first_run = True


def _time_split(split: dict[str, float], steps: int, total: float) -> str:
    """One line: where the run's wall time went."""
    parts = []
    for name, sec in split.items():
        extra = f" ({steps} steps, {1000 * sec / max(steps, 1):.0f} ms/step)" if name == "training" else ""
        parts.append(f"{name} {sec:.1f} s{extra}")
    return f"time: {', '.join(parts)}; total {total:.1f} s"


def run(argv: list[str] | None = None) -> int:
    global _first_run
    from lift3d.utils.timing import PROCESS_START, RUN_PHASES

    # the first run of a process counts its imports as start-up; later ones (eval workers) start here
    run_start = PROCESS_START if _first_run else time.perf_counter()
    _first_run = False
    RUN_PHASES.reset()
    args = build_parser().parse_intermixed_args(argv)
    from lift3d.config import dump_yaml, explicit_keys, load_mapping, override_keys, parse
    from lift3d.experiment import ExperimentConfig
    from lift3d.registry import load_plugin_file

    from lift3d.utils.library_logs import log_to, quiet_libraries

    quiet_libraries()
    for plugin in args.plugin:
        load_plugin_file(plugin)
    accelerator, devices = _accelerator(args.gpu)
    from lift3d.runtime import set_run_device

    set_run_device("cuda" if accelerator == "gpu" else "cpu")  # e.g. implementation=auto picks tcnn only on CUDA runs
    with explicit_keys(override_keys(args.overrides)):
        cfg = parse(ExperimentConfig, load_mapping(args.config, args.overrides))
    ckpt, resumed_trial = resolve_resume(cfg.resume)
    if not args.train and ckpt is None:
        raise RunError("--validate/--test/--export need a checkpoint: add resume=<trial directory or .ckpt file>")
    if args.then and not args.train:
        raise RunError("--then chains training runs: use it with --train")
    if args.then:
        check_chain(args.then, [o for o in args.overrides if not o.startswith(("resume=", "system.geometry_convert_from="))])

    import lightning.pytorch as pl
    import torch

    from lift3d.registry import find
    from lift3d.systems.base import BaseLift3DSystem

    if accelerator == "cpu" and (args.threads is not None or "OMP_NUM_THREADS" not in os.environ):
        from lift3d.utils.threads import choose_threads, register_run

        threads, note = choose_threads(args.threads)
        if note:
            print(note)
        torch.set_num_threads(threads)
        register_run()
    pl.seed_everything(cfg.seed, verbose=False)
    # everything that can fail on bad input (modules, prior, prompt) is built before any file is written
    datamodule = find(cfg.data_type, pl.LightningDataModule)(cfg.data)
    system = find(cfg.system_type, BaseLift3DSystem)(cfg.system)
    system.prepare_run(datamodule, resuming=ckpt is not None)

    if resumed_trial is not None:
        trial = resumed_trial
    else:
        stamp = time.strftime("@%Y%m%d-%H%M%S") if cfg.use_timestamp else ""
        trial = Path(cfg.exp_root_dir) / cfg.name / f"{_trial_tag(cfg)}{stamp}"
    from lift3d.utils.io import atomic_write_text

    try:
        (trial / "configs").mkdir(parents=True, exist_ok=True)
        if not (trial / "configs" / "parsed.yaml").exists():
            atomic_write_text(trial / "configs" / "parsed.yaml", dump_yaml(cfg))
    except OSError as exc:
        raise RunError(f"cannot write the trial directory {trial}: {exc.strerror}; choose another exp_root_dir") from exc
    system.save_dir = trial / "save"
    log_to(trial)

    trainer = _make_trainer(cfg, trial, accelerator, devices)
    ckpt_path = str(ckpt) if ckpt is not None else None
    if args.train:
        interrupt = next(cb for cb in trainer.callbacks if cb.__class__.__name__ == "InterruptCheckpoint")
        start_step, fit_start = trainer.global_step, time.perf_counter()
        RUN_PHASES.add("start-up", fit_start - run_start)
        trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt_path)
        fit_seconds = time.perf_counter() - fit_start
        if interrupt.saved_path is not None:
            print(f"interrupted at step {trainer.global_step}: checkpoint written to {interrupt.saved_path}\n"
                  f"resume with: python launch.py --config {trial / 'configs' / 'parsed.yaml'} --train resume={trial}")
            return 130
        with RUN_PHASES.phase("checkpoint"):
            trainer.save_checkpoint(trial / "ckpts" / "last.ckpt")
        steps = trainer.global_step - (int(torch.load(ckpt_path, map_location="cpu", weights_only=True)["global_step"]) if ckpt_path else start_step)
        RUN_PHASES.add("training", fit_seconds - RUN_PHASES.seconds.get("validation", 0.0))
        trainer.test(system, datamodule=datamodule)
        split = {k: round(v, 3) for k, v in RUN_PHASES.seconds.items()}
        total = time.perf_counter() - run_start
        atomic_write_text(trial / "train_info.json", json.dumps(
            {"steps": steps, "fit_seconds": round(fit_seconds, 3), "steps_per_second": steps / max(fit_seconds, 1e-9),
             "seconds": split, "total_seconds": round(total, 3)}, indent=2))
        print(_time_split(split, steps, total))
        if args.then:
            print(f"outputs are in {trial}")
            carried = [o for o in args.overrides if not o.startswith(("resume=", "system.geometry_convert_from="))]
            nxt = ["--config", args.then[0], "--train", *(f"--then={c}" for c in args.then[1:]), "--gpu", args.gpu,
                   *(["--threads", str(args.threads)] if args.threads is not None else []), *(f"--plugin={p}" for p in args.plugin),
                   *carried, f"system.geometry_convert_from={trial}"]
            return run(nxt)
    elif args.validate:
        trainer.validate(system, datamodule=datamodule, ckpt_path=ckpt_path)
    elif args.test:
        trainer.test(system, datamodule=datamodule, ckpt_path=ckpt_path)
    elif args.export:
        from lift3d.export.mesh_export import export_system

        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        system.load_state_dict(state["state_dict"])
        system._lift3d_step = int(state["global_step"])
        test_views = [datamodule.test_dataset[i] for i in range(len(datamodule.test_dataset))]
        paths = export_system(system, trial / "save", cfg.export, cameras=test_views, fps=system.cfg.video_fps)
        for p in paths:
            print(f"exported {p}")
    print(f"outputs are in {trial}")
    return 0


def _make_trainer(cfg, trial: Path, accelerator: str, devices):
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from lift3d.trainer_callbacks import AtomicCheckpointIO, InterruptCheckpoint

    loggers = [CSVLogger(str(trial), name="csv_logs", version="")]
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(trial), name="tb_logs", version=""))
    except ImportError:
        pass
    callbacks = [
        ModelCheckpoint(
            dirpath=str(trial / "ckpts"),
            filename="step{step:06d}",
            auto_insert_metric_name=False,
            every_n_train_steps=cfg.checkpoint.every_n_train_steps,
            save_top_k=cfg.checkpoint.save_top_k,
            save_last=True,
        ),
        InterruptCheckpoint(trial / "ckpts"),
    ]
    return pl.Trainer(
        max_steps=cfg.trainer.max_steps,
        val_check_interval=cfg.trainer.val_check_interval,
        check_val_every_n_epoch=None,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        num_sanity_val_steps=0,
        accelerator=accelerator,
        devices=devices,
        precision=cfg.trainer.precision,
        logger=loggers,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=cfg.trainer.enable_progress_bar,
        enable_model_summary=False,
        inference_mode=False,  # analytic normals need autograd during validation and test
        default_root_dir=str(trial),
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "eval":
        from lift3d.eval.cli import main as eval_main

        eval_main(args[1:])
    try:
        code = run(argv)
    except Lift3DError as exc:
        for line in str(exc).splitlines() or [""]:  # several config errors: one line each
            print(f"error: {line}", file=sys.stderr)
        code = exc.exit_code
    sys.exit(code)


if __name__ == "__main__":
    main()
