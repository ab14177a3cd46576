"""Where suite runs execute: a local pool of worker processes, or tasks on a Ray cluster.

Both call :func:`lift3d.eval.worker.execute_run` per run and hand each finished row to
``on_result`` as it arrives, so results are gathered the same way whatever the engine.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from collections.abc import Callable

from lift3d.errors import ConfigError
from lift3d.eval.worker import execute_run, failed_row

OnResult = Callable[[dict], None]


def default_workers() -> int:
    """About one worker per core (each run then uses one thread)."""
    return max(1, os.cpu_count() or 1)


def run_local(specs: list[dict], out: str, workers: int, on_result: OnResult) -> None:
    """Run specs on ``workers`` concurrent child processes of this machine."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # each thread waits on one child process
        futures = {pool.submit(execute_run, spec, out, threads): spec for spec in specs}
        for future in as_completed(futures):
            try:
                row = future.result()
            except Exception as exc:  # the engine itself failed for this run (e.g. the disk): record it, go on
                row = failed_row(futures[future], f"{type(exc).__name__}: {exc}")
            on_result(row)


def run_ray(specs: list[dict], out: str, address: str | None, on_result: OnResult, threads: int = 1) -> None:
    """Run each spec as a Ray task (``threads`` CPUs, one GPU where the cluster has GPUs).

    ``address`` is passed to ``ray.init``: ``auto`` joins a running cluster, ``None`` starts a
    local instance. On a multi-machine cluster ``out`` must be on storage every node sees.
    """
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--engine ray needs Ray: pip install 'lift3d[ray]' (or pip install ray)") from exc
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}})
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        task = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=0)(execute_run)
        refs = {task.remote(spec, out, threads): spec for spec in specs}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    row = ray.get(ref)
                except Exception as exc:  # a lost node or worker: recorded as this run's failure
                    row = failed_row(refs[ref], f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}")
                on_result(row)
    finally:
        if started:
            ray.shutdown()
