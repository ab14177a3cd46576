"""Facts about the current run that modules may ask for while they are built (set by the CLI)."""

from __future__ import annotations

from typing import Literal

_device_type: Literal["cpu", "cuda"] | None = None


def set_run_device(device_type: Literal["cpu", "cuda"] | None) -> None:
    """Record the device the run trains on (``None``: unknown, e.g. lift3d used as a library)."""
    global _device_type
    _device_type = device_type


def run_on_cuda() -> bool:
    """Whether the run trains on CUDA; when the CLI has not said, whether CUDA is available."""
    if _device_type is None:
        import torch

        return torch.cuda.is_available()
    return _device_type == "cuda"
