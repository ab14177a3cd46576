"""The report's arithmetic on a hand-made results file: per-seed means over prompts, then mean ± std."""

import json

import numpy as np
import pytest

from lift3d.eval.report import aggregate, build_report, format_cell
from lift3d.eval.runner import append_result, read_results


def _row(method, gs, prompt, seed, iou, status="ok"):
    row = {"run_id": f"{method}-{gs}-{prompt}-{seed}", "method": method, "prompt": prompt, "seed": seed,
           "hparams": {"system.guidance.guidance_scale": gs}, "status": status}
    if status == "ok":
        row |= {"metrics": {"silhouette_iou": iou}, "wall_seconds": 10.0 + seed, "artefacts": {}}
    else:
        row |= {"error": "FloatingPointError: training loss became nan at step 3"}
    return row


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "suite.json").write_text(json.dumps({"name": "hand-made"}))
    values = {("a", 5.0): [[0.5, 0.7], [0.6, 0.9]], ("a", 10.0): [[0.2, 0.4], [0.3, 0.3]], ("b", 5.0): [[0.8, 0.8], [0.8, 0.8]]}
    for (method, gs), per_seed in values.items():
        for seed, per_prompt in enumerate(per_seed):
            for prompt, iou in zip(("p1", "p2"), per_prompt):
                append_result(tmp_path, _row(method, gs, prompt, seed, iou))
    append_result(tmp_path, _row("b", 10.0, "p1", 0, None, status="failed"))
    return tmp_path


def test_cells_are_mean_and_std_over_seeds_of_prompt_means(folder):
    agg = aggregate(read_results(folder), "silhouette_iou")
    seeds = [np.mean([0.5, 0.7]), np.mean([0.6, 0.9])]
    assert agg[("a", "guidance_scale=5.0")] == pytest.approx((np.mean(seeds), np.std(seeds, ddof=1), 2))
    assert agg[("b", "guidance_scale=5.0")][1] == pytest.approx(0.0)
    assert ("b", "guidance_scale=10.0") not in agg  # failed runs carry no metrics


def test_markdown_report_tables_failures_and_missing_cells(folder):
    md_path, html_path = build_report(folder)
    md = md_path.read_text()
    rows = read_results(folder)
    a5 = format_cell(*aggregate(rows, "silhouette_iou")[("a", "guidance_scale=5.0")])
    assert "| a | " + a5 + " |" in md and "±" in a5
    assert "| b | 0.800 ± 0.000 | – |" in md
    assert "## Failed runs" in md and "training loss became nan at step 3" in md
    assert "6 runs finished" not in md and "12 runs finished, 1 failed" in md
    page = html_path.read_text()
    assert page.startswith("<!DOCTYPE html>") and a5 in page
    assert (folder / "plots" / "system-guidance-guidance-scale.png").is_file()


def test_a_torn_last_line_is_ignored_and_newest_line_of_a_run_wins(folder):
    with open(folder / "results.jsonl", "a") as f:
        f.write(json.dumps(_row("b", 10.0, "p1", 0, 0.55)) + "\n")
        f.write('{"run_id": "half-writ')
    rows = {r["run_id"]: r for r in read_results(folder)}
    assert rows["b-10.0-p1-0"]["status"] == "ok" and rows["b-10.0-p1-0"]["metrics"]["silhouette_iou"] == 0.55


def test_report_of_a_folder_that_is_not_an_eval_is_a_clear_error(tmp_path):
    from lift3d.errors import InputError

    with pytest.raises(InputError, match="not a lift3d eval folder"):
        build_report(tmp_path)
