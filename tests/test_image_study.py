"""The image-to-3D study (docs/image-to-3d-study.md) says what its stored results file says."""

import re
from pathlib import Path

from lift3d.eval.study_tables import read_rows, study_tables

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "image-to-3d-study.md"
RESULTS = ROOT / "docs" / "image-study" / "results.jsonl"


def test_the_study_tables_are_rebuilt_from_its_results_file():
    assert study_tables(RESULTS) in DOC.read_text()


def test_the_study_covers_its_suite_and_every_figure_exists():
    from lift3d.eval.suite import expand, load_suite

    suite_path = ROOT / "suites" / "bundled-image.yaml"
    wanted = {r.run_id for r in expand(load_suite(suite_path), suite_path)}
    done = {r["run_id"] for r in read_rows(RESULTS)}
    assert done == wanted, sorted(wanted ^ done)  # every run of the suite finished, and nothing else is in the file
    text = DOC.read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert figures and all((DOC.parent / f).is_file() for f in figures), figures
