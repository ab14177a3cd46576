"""Optimizer settings shared by the systems."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from lift3d.errors import ConfigError
from lift3d.registry import suggest


@dataclass
class OptimizerConfig:
    """Optimizer of a system's trainable parameters."""

    name: Literal["Adam", "AdamW", "Adamax", "SGD"] = "Adam"
    """torch.optim class."""
    lr: float = 0.01
    """Learning rate of parameters not listed in ``param_lrs``."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam(W) / Adamax betas."""
    eps: float = 1e-15
    """Adam(W) epsilon."""
    weight_decay: float = 0.0
    """Weight decay."""
    param_lrs: dict[str, Any] = field(default_factory=dict)
    """Learning rate per parameter-name prefix, e.g. {geometry.encoding: 0.01, geometry.density_network: 0.001}.
    Nested mappings are flattened, so the override ``system.optimizer.param_lrs.geometry.encoding=0.02`` works."""
    lr_decay: Literal["none", "cosine", "exponential"] = "none"
    """How every learning rate falls from ``lr_decay_start`` to the run's last step
    (``trainer.max_steps``): ``cosine`` or ``exponential`` (geometric) down to
    ``final_lr_fraction`` of its value; ``none`` keeps them constant."""
    final_lr_fraction: float = 0.1
    """Learning rate at the last step, as a fraction of the configured one (``lr_decay`` only)."""
    lr_decay_start: int = 0
    """Step at which the decay begins; constant before it."""

    def __post_init__(self) -> None:
        self.param_lrs = flatten_lrs(self.param_lrs, "system.optimizer.param_lrs")
        if not 0.0 < self.final_lr_fraction <= 1.0:
            raise ConfigError(f"system.optimizer.final_lr_fraction: {self.final_lr_fraction} is not in (0, 1]; 0.1 ends at a tenth of the rate")
        if self.lr_decay_start < 0:
            raise ConfigError(f"system.optimizer.lr_decay_start: {self.lr_decay_start} is negative; give a step, e.g. 0")


def flatten_lrs(value: dict, path: str, prefix: str = "") -> dict[str, float]:
    """``{geometry: {encoding: 0.01}}`` and ``{geometry.encoding: 0.01}`` both become the latter."""
    out: dict[str, float] = {}
    for key, v in value.items():
        name = f"{prefix}{key}"
        if isinstance(v, dict):
            out.update(flatten_lrs(v, path, name + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[name] = float(v)
        else:
            raise ConfigError(f"{path}.{name}: expected a learning rate (a number), got {v!r}")
    return out


def _prefix_of(name: str, prefixes: list[str]) -> str | None:
    """The longest prefix in ``prefixes`` that ``name`` equals or lies under."""
    return next((pre for pre in sorted(prefixes, key=len, reverse=True) if name == pre or name.startswith(pre + ".")), None)


def param_lr_errors(param_lrs: dict[str, float], parameter_names: list[str]) -> list[str]:
    """One line for each ``param_lrs`` prefix that matches no trainable parameter."""
    used = {_prefix_of(n, list(param_lrs)) for n in parameter_names}
    modules = sorted({".".join(n.split(".")[:i]) for n in parameter_names for i in range(1, n.count(".") + 1)})
    return [
        f"system.optimizer.param_lrs.{prefix}: matches no trainable parameter{suggest(prefix, modules) or f'; modules: {modules}'}"
        for prefix in param_lrs
        if prefix not in used
    ]


def build_optimizer(cfg: OptimizerConfig, module: torch.nn.Module) -> torch.optim.Optimizer:
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    errors = param_lr_errors(cfg.param_lrs, [n for n, _ in named])
    if errors:
        raise ConfigError("\n".join(errors))
    groups: dict[str, list] = {prefix: [] for prefix in cfg.param_lrs}
    rest = []
    for name, p in named:
        prefix = _prefix_of(name, list(cfg.param_lrs))
        (groups[prefix] if prefix is not None else rest).append(p)
    param_groups = [{"params": ps, "lr": cfg.param_lrs[pre]} for pre, ps in groups.items()]
    if rest:
        param_groups.append({"params": rest, "lr": cfg.lr})
    if cfg.name == "SGD":
        return torch.optim.SGD(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    cls = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW, "Adamax": torch.optim.Adamax}[cfg.name]
    return cls(param_groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


def lr_factor(cfg: OptimizerConfig, step: int, max_steps: int) -> float:
    """The fraction of each configured learning rate used at ``step`` (see ``lr_decay``)."""
    if cfg.lr_decay == "none" or step <= cfg.lr_decay_start:
        return 1.0
    span = max(max_steps - cfg.lr_decay_start, 1)
    progress = min((step - cfg.lr_decay_start) / span, 1.0)
    if cfg.lr_decay == "cosine":
        return cfg.final_lr_fraction + (1.0 - cfg.final_lr_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.final_lr_fraction**progress


def build_lr_schedule(cfg: OptimizerConfig, optimizer: torch.optim.Optimizer, max_steps: int):
    """A per-step ``LambdaLR`` for Lightning, or None when ``lr_decay`` is ``none``."""
    if cfg.lr_decay == "none":
        return None
    if max_steps <= 0:
        raise ConfigError(f"system.optimizer.lr_decay: {cfg.lr_decay} needs trainer.max_steps > 0 to know where the run ends")
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg, step, max_steps))
    return {"scheduler": schedule, "interval": "step", "frequency": 1}
