"""Where a run's wall time goes: start-up, training loop, validation, test turntable, video.

The phases are measured where they happen (the CLI, the system's hooks) into one
:data:`RUN_PHASES`; the CLI prints the split at the end of a run and writes it to
``train_info.json``.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from collections.abc import Iterator

PROCESS_START = time.perf_counter()
"""When lift3d was first imported (a few hundredths of a second after the interpreter started)."""


class PhaseTimes:
    """Seconds spent per named phase, accumulated."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def reset(self) -> None:
        self.seconds.clear()


RUN_PHASES = PhaseTimes()
