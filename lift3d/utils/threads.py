"""How many CPU threads a run takes, so that lift3d runs side by side share the cores.

Each torch process defaults to all cores; two side by side oversubscribe them and each slows
several-fold. A run registers itself in ``<cache>/running/<pid>`` while it lives; a new run
counts the live ones and takes ``cores // (others + 1)`` threads (at least one). ``--threads``
or ``OMP_NUM_THREADS`` override it (the evaluation runner sets the latter per worker).
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path


def running_dir() -> Path:
    root = os.environ.get("LIFT3D_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "lift3d")
    return Path(root) / "running"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def other_runs() -> list[int]:
    """Process ids of other live lift3d runs on this machine (stale entries are removed)."""
    folder = running_dir()
    if not folder.is_dir():
        return []
    pids = []
    for entry in folder.iterdir():
        try:
            pid = int(entry.name)
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        if _alive(pid):
            pids.append(pid)
        else:
            entry.unlink(missing_ok=True)
    return pids


def register_run() -> None:
    """Mark this process as a running lift3d run until it exits."""
    folder = running_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        entry = folder / str(os.getpid())
        entry.touch()
    except OSError:
        return
    atexit.register(lambda: entry.unlink(missing_ok=True))


def choose_threads(requested: int | None, cores: int | None = None) -> tuple[int, str | None]:
    """``(threads, note)``: ``requested`` if given, else this run's share of the cores."""
    cores = cores or os.cpu_count() or 1
    if requested is not None:
        return max(1, requested), None
    others = len(other_runs())
    threads = max(1, cores // (others + 1))
    note = None
    if others:
        note = (f"note: {others} other lift3d run{'s are' if others > 1 else ' is'} using this machine; "
                f"this run takes {threads} of {cores} cores (--threads N to choose)")
    return threads, note
