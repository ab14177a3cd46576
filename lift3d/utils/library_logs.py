"""Keep the console to lift3d's own progress and results; library messages go to the trial's log file.

Lightning, transformers, diffusers and Python warnings print advertisements, deprecation notices
and loading chatter. While a run is set up (before its trial folder exists) their messages are
held in memory; once the folder is known they are written to ``<trial>/logs/libraries.log``
and every later message goes there too. Messages at ERROR and above still reach the console.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

LIBRARY_LOGGERS = (
    "lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric",
    "transformers", "diffusers", "huggingface_hub", "py.warnings",
)
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_sink: logging.Handler | None = None
"""Where library messages go: a memory buffer until the trial is known, then its log file."""
_console: logging.Handler | None = None


def _route() -> None:
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [h for h in (_sink, _console) if h is not None]
        logger.propagate = False
        logger.setLevel(logging.INFO)


def quiet_libraries() -> None:
    """Route library logging and warnings away from the console, into a buffer (idempotent)."""
    global _sink, _console
    try:  # their own console handlers and progress bars (loading weights)
        import transformers.utils.logging as tlog

        tlog.disable_default_handler()
        tlog.disable_progress_bar()
    except ImportError:
        pass
    try:
        import diffusers.utils.logging as dlog

        dlog.disable_default_handler()
        dlog.disable_progress_bar()
    except ImportError:
        pass
    import lightning.pytorch  # noqa: F401  (it installs a console handler on import)

    if _sink is None:
        _sink = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1, flushOnClose=False)
        _sink.setFormatter(logging.Formatter(FORMAT))
    if _console is None:
        _console = logging.StreamHandler()
        _console.setLevel(logging.ERROR)
        _console.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logging.captureWarnings(True)
    _route()


def log_to(trial: Path) -> Path:
    """Write what was held, and everything after, to ``<trial>/logs/libraries.log``."""
    global _sink
    path = (trial / "logs" / "libraries.log").resolve()
    if isinstance(_sink, logging.FileHandler) and Path(_sink.baseFilename) == path:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    file = logging.FileHandler(path, encoding="utf-8")
    file.setFormatter(logging.Formatter(FORMAT))
    if isinstance(_sink, logging.handlers.MemoryHandler):
        _sink.setTarget(file)
        _sink.flush()
    elif _sink is not None:
        _sink.close()
    _sink = file
    _route()
    return path
