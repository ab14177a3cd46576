"""Running a suite into an output folder: ``suite.json``, ``results.jsonl``, ``runs/``, the report.

The folder belongs to one suite (by name): a folder holding another suite's results, or files
that are not a lift3d evaluation, is refused before anything is written. ``results.jsonl``
gets one JSON line per finished run, appended as runs finish; a rerun skips runs recorded as
``ok`` and retries failed ones (the newest line of a run is the one that counts).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from lift3d.errors import InputError
from lift3d.eval.suite import RunSpec, SuiteConfig, expand, load_suite
from lift3d.config import to_dict
from lift3d.utils.io import atomic_write_text

RESULTS = "results.jsonl"
SUITE = "suite.json"


def read_results(out: Path) -> list[dict]:
    """Rows of ``results.jsonl``, newest line per run (a torn last line from a killed run is skipped)."""
    path = out / RESULTS
    if not path.is_file():
        return []
    rows: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows[row["run_id"]] = row
    return list(rows.values())


def claim_folder(out: Path, suite: SuiteConfig) -> None:
    """Make ``out`` this suite's folder, or refuse (one line) if it holds something else."""
    record = out / SUITE
    if record.is_file():
        owner = json.loads(record.read_text()).get("name")
        if owner != suite.name:
            raise InputError(f"{out} holds results of suite {owner!r}, not {suite.name!r}; choose another --out (nothing was changed)")
    elif out.exists() and any(out.iterdir()):
        raise InputError(f"{out} is not empty and is not a lift3d eval folder; choose a new or empty --out (nothing was changed)")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps({"name": suite.name, "suite": to_dict(suite)}, indent=2))


def append_result(out: Path, row: dict) -> None:
    """Append one row as a single write (whole lines only), NaN written as null."""
    clean = json.loads(json.dumps(row, default=str), parse_constant=lambda _: None)
    with open(out / RESULTS, "a") as f:
        f.write(json.dumps(clean) + "\n")


def _finite(row: dict) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in row.get("metrics", {}).values())


def pending_runs(specs: list[RunSpec], out: Path) -> list[RunSpec]:
    """The runs still to do: those without an ``ok`` row with finite metrics (failed runs are retried)."""
    done = {r["run_id"] for r in read_results(out) if r.get("status") == "ok" and _finite(r)}
    return [s for s in specs if s.run_id not in done]


def run_suite(suite_path: str | Path, out: str | Path, engine: str = "local", workers: int | None = None,
              address: str | None = None) -> list[dict]:
    """Expand, check and run a suite; returns the rows of its runs (ok and failed)."""
    from tqdm import tqdm

    from lift3d.eval import engines

    suite = load_suite(suite_path)
    specs: list[RunSpec] = expand(suite, suite_path)  # every run's config is checked before work starts
    out = Path(out)
    claim_folder(out, suite)
    todo = [s.to_json() for s in pending_runs(specs, out)]
    bar = tqdm(total=len(specs), initial=len(specs) - len(todo), desc=f"suite {suite.name}", unit="run")

    def on_result(row: dict) -> None:
        append_result(out, row)
        bar.update(1)
        if row["status"] != "ok":
            bar.write(f"run {row['run_id']} failed: {row['error']}")

    try:
        if engine == "local":
            engines.run_local(todo, str(out.resolve()), workers or engines.default_workers(), on_result)
        elif engine == "ray":
            engines.run_ray(todo, str(out.resolve()), address, on_result)
        else:
            raise InputError(f"--engine {engine!r} is not 'local' or 'ray'")
    finally:
        bar.close()
    wanted = {s.run_id for s in specs}
    return [r for r in read_results(out) if r["run_id"] in wanted]
