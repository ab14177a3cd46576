"""Lightning pieces of a run: atomic checkpoint writing, Ctrl-C handling, step updates."""

from __future__ import annotations

import signal
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lift3d.utils.io import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary file and renamed, so a crash never leaves half a file."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


class InterruptCheckpoint(pl.Callback):
    """On the first Ctrl-C, finish the current step, write ``ckpts/last.ckpt`` and stop cleanly.

    A second Ctrl-C interrupts at once.
    """

    def __init__(self, ckpt_dir: Path) -> None:
        self.ckpt_dir = ckpt_dir
        self.requested = False
        self.saved_path: Path | None = None
        self._previous = None

    def _handler(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def on_train_start(self, trainer, pl_module) -> None:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None

    def on_train_end(self, trainer, pl_module) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.requested and self.saved_path is None:
            self.saved_path = self.ckpt_dir / "last.ckpt"
            trainer.save_checkpoint(self.saved_path)
            trainer.should_stop = True
