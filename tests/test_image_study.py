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


def test_the_per_object_table_averages_the_seeds_of_the_default_setting_on_held_out_images():
    from lift3d.eval.study_tables import object_table

    def row(method, image, seed, psnr, varied=None):
        return {"run_id": f"{method}-{image}-{seed}-{varied}", "method": method, "image": str(ROOT / "examples" / "images" / image),
                "seed": seed, "varied": varied, "hparams": {"system.loss.lambda_rgb": 2000.0 if varied else 500.0}, "status": "ok",
                "metrics": {"psnr": psnr, "psnr_back": psnr + 1, "r_precision": 1.0}}

    rows = [row("a", "a_green_house.png", 0, 10.0), row("a", "a_green_house.png", 1, 12.0),
            row("a", "a_green_house.png", 0, 30.0, varied="system.loss.lambda_rgb"),  # another setting: not in the table
            row("b", "a_green_house.png", 0, 14.0),
            row("a", "a_red_house.png", 0, 50.0)]  # a training image: not in the table
    lines = object_table(rows).splitlines()
    assert lines[0] == "| held-out image | PSNR a / b | back PSNR | R-precision |"
    assert lines[2:] == ["| a green house | 11.00 / 14.00 | 12.00 / 15.00 | 1.00 / 1.00 |"]
