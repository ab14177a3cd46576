"""Base of every method: builds its registered modules, weights its losses, saves images and videos."""

from __future__ import annotations

import random
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

from lift3d.config import resolve
from lift3d.errors import ConfigError, RunError
from lift3d.registry import find, suggest


class BaseLift3DSystem(pl.LightningModule):
    """A LightningModule built from a typed config.

    Subclasses declare ``regularizer_names`` (losses they compute themselves); the guidance
    class declares the rest. The config's ``loss`` mapping holds ``lambda_<name>`` weights
    (each may be scheduled) and may only name losses that somebody produces.
    """

    Config: type
    regularizer_names: tuple[str, ...] = ()
    guidance_kind: str = "lift3d.guidance.base.BaseGuidance"
    """Dotted path of the base class the system's guidance must derive from."""
    registered_name: str = ""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.save_dir: Path | None = None

    # ---- config checks -------------------------------------------------------------------
    @classmethod
    def guidance_class(cls, cfg) -> type:
        """The registered guidance class ``cfg.guidance_type`` names (of this system's kind)."""
        import importlib

        mod, _, name = cls.guidance_kind.rpartition(".")
        return find(cfg.guidance_type, getattr(importlib.import_module(mod), name))

    @classmethod
    def produced_losses(cls, cfg) -> tuple[str, ...]:
        return tuple(cls.guidance_class(cfg).loss_names) + tuple(cls.regularizer_names)

    @classmethod
    def check_config(cls, cfg, path: str) -> None:
        """Checks across modules, run at parse time; every problem is reported, one line each."""
        errors = cls.config_errors(cfg, path)
        if errors:
            raise ConfigError("\n".join(errors))

    @classmethod
    def config_errors(cls, cfg, path: str) -> list[str]:
        produced = cls.produced_losses(cfg)
        valid = [f"lambda_{n}" for n in produced]
        return [
            f"{path}.loss.{key}: no module produces this loss{suggest(key, valid)}; valid weights: {valid}"
            for key in cfg.loss
            if key not in valid
        ]

    def loss_weight(self, name: str) -> float:
        value = self.cfg.loss.get(f"lambda_{name}", 0.0)
        return resolve(value, self.true_global_step)

    def prepare_run(self, datamodule, resuming: bool) -> None:
        """Checks and work before the run starts and before any file is written (e.g. a loss that
        needs an input the data module lacks; initialising a stage from the previous stage's run);
        ``resuming``: the state will come from a checkpoint instead."""

    # ---- modules ---------------------------------------------------------------------------
    @staticmethod
    def build(kind: str, name: str, cfg, *args):
        import importlib

        mod, _, cls_name = kind.rpartition(".")
        base = getattr(importlib.import_module(mod), cls_name)
        return find(name, base)(cfg, *args)

    def lift3d_modules(self) -> list:
        from lift3d.module import Lift3DModule

        return [m for m in self.modules() if isinstance(m, Lift3DModule)]

    @property
    def true_global_step(self) -> int:
        if self._trainer is not None:
            return int(self.global_step)
        return getattr(self, "_lift3d_step", 0)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        step = self.true_global_step
        for module in self.lift3d_modules():
            module.update_step(step)

    # ---- checkpoints -----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lift3d_rng"] = {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state_to_tensors(np.random.get_state()),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rng = checkpoint.get("lift3d_rng")
        if rng is not None:
            torch.set_rng_state(rng["torch"])
            np.random.set_state(_numpy_state_from_tensors(rng["numpy"]))
            random.setstate(rng["python"])
            if rng["cuda"] is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])

    # ---- outputs ---------------------------------------------------------------------------
    def save_path(self, *parts: str) -> Path:
        if self.save_dir is None:
            raise RunError("the system has no trial directory to save into; run it through launch.py")
        path = self.save_dir.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def logs_this_step(self) -> bool:
        """Whether this training step's metrics reach the logger. Lightning writes them every
        ``trainer.log_every_n_steps``; a ``self.log`` call on another step costs time (Lightning
        moves its metric state each time: 0.8 ms a call under cProfile) and is never written, so
        per-step metrics other than the progress bar's are logged only on these steps."""
        connector = getattr(self._trainer, "_logger_connector", None) if self._trainer is not None else None
        return bool(getattr(connector, "should_update_logs", True))

    def log_train_metrics(self, metrics: dict[str, float | torch.Tensor]) -> None:
        """``train/<name>`` for each metric, on the steps that reach the logger."""
        if self.logs_this_step():
            for name, value in metrics.items():
                self.log(f"train/{name}", value.detach() if isinstance(value, torch.Tensor) else value)

    def weighted_total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Σ weight × loss over the losses whose weight (``system.loss.lambda_<name>``, scheduled) is above 0
        at this step; every loss is logged, weighted or not (on the steps the logger writes), and the
        total is checked to be finite (and logged every step, for the progress bar)."""
        total = None
        for name, value in losses.items():
            weight = self.loss_weight(name)
            if weight > 0:
                total = weight * value if total is None else total + weight * value
        self.log_train_metrics({f"loss_{name}": value for name, value in losses.items()})
        if total is None:
            example = f", e.g. system.loss.lambda_{next(iter(losses))}=1" if losses else ""
            raise RunError(f"every loss weight is 0 at step {self.true_global_step}, so nothing would be optimised; "
                           f"set one above 0{example}")
        self.check_finite(total)
        self.log("train/loss", total.detach(), prog_bar=True)
        return total

    def check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise RunError(
                f"the loss became {loss.item()} at step {self.true_global_step}; lower the learning rate or the guidance scale"
            )


def _numpy_state_to_tensors(state: tuple) -> dict:
    """numpy's RNG state as tensors and plain numbers, so checkpoints load with weights_only=True."""
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}


def _numpy_state_from_tensors(state: dict) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return (state["name"], keys, state["pos"], state["has_gauss"], state["cached"])
