"""`lift3d eval`: suites, the runner with the local and Ray engines, failures, resuming, the report."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from lift3d.eval.report import aggregate, format_cell, setting_label
from lift3d.eval.suite import expand, load_suite

ROOT = Path(__file__).parents[1]
TINY = ROOT / "suites" / "tiny.yaml"


def lift3d_eval(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "lift3d.cli", "eval", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def eval_in_process(capsys, *args) -> tuple[int, str]:
    """``lift3d eval ...`` through the CLI's entry point in this process: (exit code, stderr)."""
    from lift3d.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["eval", *map(str, args)])
    return exit_.value.code, capsys.readouterr().err


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def write_suite(path: Path, **changes) -> Path:
    data = yaml.safe_load(TINY.read_text())
    for key, value in copy.deepcopy(changes).items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    for m in data["methods"]:
        m["preset"] = str(ROOT / "configs" / "dreamfusion-bundled.yaml")
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "tiny-local"
    proc = lift3d_eval(TINY, "--out", out, "--workers", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_suites_expand_into_checked_runs():
    runs = expand(load_suite(TINY), TINY)
    assert len(runs) == 4 and len({r.run_id for r in runs}) == 4
    assert {(r.method, r.hparams["system.guidance.guidance_scale"]) for r in runs} == {
        ("sds", 5.0), ("sds", 10.0), ("sds-plain", 5.0), ("sds-plain", 10.0)}
    plain = next(r for r in runs if r.method == "sds-plain")
    assert "system.prompt_processor.use_view_dependent_prompt=false" in plain.overrides
    shipped = ROOT / "suites" / "bundled-text.yaml"
    big = expand(load_suite(shipped), shipped)
    suite = load_suite(shipped)
    assert len(big) == len(suite.methods) * 2 * 6 == 24  # methods x guidance scales x prompts x 1 seed
    from lift3d.priors.world.catalog import HELD_OUT, caption

    assert any(caption(*p) in suite.prompts for p in HELD_OUT) and len(suite.prompts) == 6


@pytest.mark.parametrize("change, message", [
    ({"promts": ["a red cube"]}, "did you mean 'prompts'"),
    ({"prompts": []}, "either prompts (text-to-3D) or images (image-to-3D)"),
    ({"images": ["examples/images/a_green_house.png"]}, "either prompts (text-to-3D) or images (image-to-3D)"),
    ({"prompts": None, "images": ["examples/images/no_such.png"]}, "image 'examples/images/no_such.png' not found"),
    ({"methods": [{"name": "x", "preset": "configs/no-such-preset.yaml"}]}, "preset 'configs/no-such-preset.yaml' not found"),
    ({"grid": {"system.guidance.guidance_scael": [5.0]}}, "did you mean 'guidance_scale'"),
    ({"overrides": {"system.guidance_type": "diffusers-sds-guidanse"}}, "did you mean"),
])
def test_bad_suites_fail_in_one_line_before_any_work(tmp_path, capsys, change, message):
    suite = write_suite(tmp_path / "bad.yaml", **change)
    if "methods" in change:  # keep the bad preset as written
        data = yaml.safe_load(suite.read_text())
        data["methods"] = change["methods"]
        suite.write_text(yaml.safe_dump(data))
    code, err = eval_in_process(capsys, suite, "--out", tmp_path / "out")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert not (tmp_path / "out").exists()


def test_an_output_folder_of_another_suite_is_refused_and_kept(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "suite.json").write_text(json.dumps({"name": "someone-elses"}))
    (out / "results.jsonl").write_text('{"run_id": "x", "status": "ok"}\n')
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, err = eval_in_process(capsys, TINY, "--out", out)
    assert code == 2 and "holds results of suite 'someone-elses'" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_local_engine_records_every_run(local_run):
    rows = rows_of(local_run)
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert set(r["metrics"]) == {"r_precision", "silhouette_iou", "chamfer", "volume_iou"}  # a cube: no Janus
        assert 0 <= r["metrics"]["silhouette_iou"] <= 1 and r["metrics"]["chamfer"] > 0
        assert r["wall_seconds"] > 0 and r["steps_per_second"] > 0 and r["peak_memory_mb"] > 100
        assert f"system.guidance.guidance_scale={r['hparams']['system.guidance.guidance_scale']}" in r["overrides"]
        assert Path(r["artefacts"]["mesh"]).is_file() and Path(r["artefacts"]["turntable_video"]).is_file()
        info = json.loads((Path(r["artefacts"]["trial"]) / "train_info.json").read_text())
        assert info["steps"] == 6 and info["steps_per_second"] == pytest.approx(r["steps_per_second"])


def test_a_rerun_skips_finished_runs(local_run):
    before = (local_run / "results.jsonl").read_text()
    proc = lift3d_eval(TINY, "--out", local_run, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (local_run / "results.jsonl").read_text() == before
    assert "4 of 4 runs ok" in proc.stdout


def test_report_figures_agree_with_the_results_file(local_run):
    rows = rows_of(local_run)
    report = (local_run / "report.md").read_text()
    for key in ("r_precision", "silhouette_iou", "chamfer", "volume_iou", "steps_per_second"):
        for (method, setting), (mean, std, n) in aggregate(rows, key).items():
            values = [r["metrics"].get(key, r.get(key)) for r in rows if r["method"] == method and setting_label(r) == setting]
            assert mean == pytest.approx(np.mean(values))
        title = {"r_precision": "R-precision", "silhouette_iou": "silhouette IoU", "chamfer": "Chamfer", "volume_iou": "volume IoU",
                 "steps_per_second": "steps/s"}[key]
        section = next(part for part in report.split("## ") if part.startswith(title))
        header = next(line for line in section.splitlines() if line.startswith("| method"))
        settings = [c.strip() for c in header.strip("|").split("|")][1:]
        for line in section.splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0] in ("sds", "sds-plain"):
                for setting, cell in zip(settings, cells[1:]):
                    assert cell == format_cell(*aggregate(rows, key)[(cells[0], setting)])
    assert (local_run / "plots" / "system-guidance-guidance-scale.png").is_file()
    assert (local_run / "grids" / "a-red-cube.png").is_file()


def test_report_html_renders_in_headless_chromium(local_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (.ci/run installs it)")
    page = (local_run / "report.html").read_text()
    for target in re.findall(r'(?:src|href)="([^"]+)"', page):
        if not target.startswith("data:"):
            assert (local_run / target).is_file(), target
    shot = tmp_path / "shot.png"
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                           f"--screenshot={shot}", "--window-size=1200,2000", (local_run / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    assert "CONSOLE" not in proc.stderr, [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    dark = (img.max(-1) < 80).mean(1)  # rows with text or table borders
    assert dark[:400].max() > 0.05  # the title and the first tables
    # pixels of the turntable grid image appear in the screenshot (its colours, scaled without smoothing)
    grid = np.asarray(Image.open(local_run / "grids" / "a-red-cube.png").convert("RGB")).astype(int)
    grid_colours = {tuple(c) for c in grid.reshape(-1, 3) if np.ptp(c) > 15}  # the coloured (non-grey) pixels
    shot_colours = [tuple(c) for c in img.reshape(-1, 3)]
    assert sum(c in grid_colours for c in shot_colours) > 2000
    # the plots: matplotlib's first line colour
    assert (np.abs(img - [31, 119, 180]).sum(-1) < 30).sum() > 50


def test_failed_and_nan_runs_are_recorded_while_the_others_go_on(tmp_path):
    suite = write_suite(tmp_path / "failing.yaml", name="failing", grid=None, methods=[
        {"name": "ok", "preset": "x"},
        {"name": "no-prior", "preset": "x", "overrides": {"system.guidance.pretrained_model_name_or_path": str(tmp_path / "missing-prior")}},
        {"name": "nan", "preset": "x", "overrides": {"system.geometry.density_blob_scale": float("nan")}},  # NaN densities
    ])
    out = tmp_path / "out"
    proc = lift3d_eval(suite, "--out", out, "--workers", 2)
    assert proc.returncode == 1, proc.stderr[-2000:]
    rows = {r["method"]: r for r in rows_of(out)}
    assert rows["ok"]["status"] == "ok"
    assert rows["no-prior"]["status"] == "failed" and "missing-prior" in rows["no-prior"]["error"]
    assert rows["nan"]["status"] == "failed" and "NaN" in rows["nan"]["error"]
    assert "1 of 3 runs ok" in proc.stdout
    report = (out / "report.md").read_text()
    assert "## Failed runs" in report and rows["nan"]["error"] in report
    # a rerun would retry the failures only
    from lift3d.eval.runner import pending_runs

    assert sorted(r.method for r in pending_runs(expand(load_suite(suite), suite), out)) == ["nan", "no-prior"]


def test_ray_engine_gives_the_same_results(local_run, tmp_path):
    pytest.importorskip("ray", reason="Ray is in the dev extra: pip install -e '.[dev]'")
    out = tmp_path / "tiny-ray"
    proc = lift3d_eval(TINY, "--out", out, "--engine", "ray")
    assert proc.returncode == 0, proc.stderr[-3000:]
    local = {r["run_id"]: r for r in rows_of(local_run)}
    ray_rows = {r["run_id"]: r for r in rows_of(out)}
    assert set(ray_rows) == set(local)
    for run_id, r in ray_rows.items():
        assert r["status"] == "ok"
        for key, value in local[run_id]["metrics"].items():
            assert r["metrics"][key] == pytest.approx(value, abs=0.02), (run_id, key)


def two_stage_suite(path: Path, refine_overrides: dict) -> Path:
    coarse = {"trainer.max_steps": 4, "trainer.val_check_interval": 4, "checkpoint.every_n_train_steps": 4,
              "data.n_val_views": 1, "data.n_test_views": 4, "data.eval_resolution": 32, "data.resolution": 16,
              "system.renderer.num_samples_per_ray": 16, "system.geometry.encoding.n_levels": 4}
    refine = {"trainer.max_steps": 4, "trainer.val_check_interval": 4, "checkpoint.every_n_train_steps": 4,
              "data.n_val_views": 1, "data.n_test_views": 4, "data.eval_resolution": 32, "data.resolution": 16,
              "system.geometry.isosurface_resolution": 16, "system.geometry.encoding.n_levels": 4, **refine_overrides}
    suite = {"name": "two-stage", "prompts": ["a green cube"], "seeds": [0],
             "methods": [{"name": "magic3d", "preset": str(ROOT / "configs" / "magic3d-coarse-bundled.yaml"), "overrides": coarse,
                          "then": [{"preset": str(ROOT / "configs" / "magic3d-refine-bundled.yaml"), "overrides": refine}]}],
             "overrides": {"export.resolution": 32, "export.texture_size": 64}}
    path.write_text(yaml.safe_dump(suite))
    return path


def test_a_two_stage_method_runs_as_one_method(tmp_path):
    suite = two_stage_suite(tmp_path / "two-stage.yaml", {})
    (spec,) = expand(load_suite(suite), suite)
    assert len(spec.stages) == 1 and "system.prompt_processor.prompt=a green cube" in spec.stages[0]["overrides"]
    out = tmp_path / "out"
    proc = lift3d_eval(suite, "--out", out, "--workers", 1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = rows_of(out)
    assert row["status"] == "ok", row.get("error")
    trial = Path(row["artefacts"]["trial"])
    assert trial.parent.name == "stage2"  # the method's result is its last stage
    parsed = yaml.safe_load((trial / "configs" / "parsed.yaml").read_text())
    assert parsed["system"]["stage"] == "refine" and "/run/" in parsed["system"]["geometry_convert_from"]
    assert json.loads(next(trial.glob("save/it*-export/export.json")).read_text())["surface"]["rule"] == "mesh"
    assert 0 < row["metrics"]["silhouette_iou"] <= 1 and Path(row["artefacts"]["mesh"]).is_file()


def test_a_later_stage_with_a_bad_key_stops_the_suite_before_any_work(tmp_path, capsys):
    suite = two_stage_suite(tmp_path / "bad.yaml", {"system.geometry.isosurface_resolutoin": 8})
    code, err = eval_in_process(capsys, suite, "--out", tmp_path / "out")
    assert code == 2 and "stage 2" in err and "did you mean 'isosurface_resolution'" in err
    assert not (tmp_path / "out").exists()


# ---- image-to-3D suites, one hyperparameter at a time ------------------------------------------


def test_the_image_study_expands_one_setting_change_at_a_time():
    shipped = ROOT / "suites" / "bundled-image.yaml"
    suite = load_suite(shipped)
    runs = expand(suite, shipped)
    n_images = len(suite.images)
    assert n_images == 5 and len(runs) == 3 * 3 * n_images * 2 and len({r.run_id for r in runs}) == len(runs)  # methods x settings x images x seeds
    by_method = {m: [r for r in runs if r.method == m] for m in ("zero123", "magic123", "reference-text")}
    for method, rows in by_method.items():
        defaults = [r for r in rows if r.varied is None]
        assert len(defaults) == n_images * 2
        for r in rows:  # every run carries every key's value; a varied run differs from the defaults in that key only
            d = next(x for x in defaults if x.image == r.image and x.seed == r.seed)
            assert set(r.hparams) == set(d.hparams)
            assert [k for k in r.hparams if r.hparams[k] != d.hparams[k]] == ([r.varied] if r.varied else [])
    assert by_method["zero123"][0].hparams == {"system.loss.lambda_rgb": 500.0, "system.guidance.guidance_scale": 1.5}
    assert by_method["reference-text"][0].hparams["system.text_guidance.guidance_scale"] == 5.0
    # the caption goes to the methods with a text prior, and to every later stage with the image
    zero123, magic123 = by_method["zero123"][0], by_method["magic123"][0]
    assert zero123.prompt == "a green house" and not any("prompt_processor" in o for o in zero123.overrides)
    assert "system.prompt_processor.prompt=a green house" in magic123.overrides
    assert any(o.startswith("data.image_path=") and o.endswith("a_green_house.png") for o in magic123.stages[0]["overrides"])


def test_a_grid_key_missing_from_a_method_is_an_error(tmp_path, capsys):
    suite = {"name": "x", "images": [str(ROOT / "examples" / "images" / "a_green_house.png")], "grid_mode": "one_at_a_time",
             "methods": [{"name": "z", "preset": str(ROOT / "configs" / "zero123-bundled.yaml")}],
             "grid": {"system.text_guidance.guidance_scale": [3.0]}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(suite))
    code, err = eval_in_process(capsys, path, "--out", tmp_path / "out")
    assert code == 2 and "text_guidance" in err and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """zero123-bundled at its settings and at another guidance scale, on one example image, a few steps."""
    folder = tmp_path_factory.mktemp("image-eval")
    small = {"trainer.max_steps": 6, "trainer.val_check_interval": 6, "checkpoint.every_n_train_steps": 6,
             "data.random_camera.n_val_views": 1, "data.random_camera.n_test_views": 8, "data.random_camera.eval_resolution": 32,
             "data.reference_resolution": 32, "system.renderer.num_samples_per_ray": 16, "export.resolution": 32,
             "export.texture_size": 64}
    suite = {"name": "tiny-image", "images": [str(ROOT / "examples" / "images" / "a_green_house.png")], "seeds": [0],
             "methods": [{"name": "zero123", "preset": str(ROOT / "configs" / "zero123-bundled.yaml"),
                          "grid": {"system.guidance.guidance_scale": [3.0]}}],
             "grid_mode": "one_at_a_time", "overrides": small}
    path = folder / "tiny-image.yaml"
    path.write_text(yaml.safe_dump(suite))
    out = folder / "out"
    proc = lift3d_eval(path, "--out", out, "--workers", 1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_image_runs_are_scored_against_the_example_truth(image_run):
    rows = rows_of(image_run)
    assert [r["varied"] for r in rows] == [None, "system.guidance.guidance_scale"]
    for r in rows:
        assert r["status"] == "ok", r.get("error")
        assert r["image"].endswith("a_green_house.png") and r["prompt"] == "a green house"
        m = r["metrics"]
        for key in ("psnr", "ssim", "psnr_back", "silhouette_iou", "janus", "r_precision", "volume_iou", "chamfer"):
            assert key in m, key
        assert 5 < m["psnr"] < 40 and 0 <= m["janus"] <= 1


def test_the_image_report_agrees_with_the_results_file(image_run):
    """Every cell of the report's PSNR and Janus tables is the results file's value (one seed, one image)."""
    from lift3d.eval.report import build_report

    md, _ = build_report(image_run)
    text = md.read_text()
    rows = rows_of(image_run)
    for key, title in (("psnr", "novel-view PSNR (dB)"), ("janus", "Janus rate"), ("psnr_back", "back-view PSNR (dB)")):
        section = text[text.index(f"## {title}"):]
        header, _, row = section.splitlines()[2:5]
        assert header == "| method | default | guidance_scale=3.0 |"
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == "zero123"
        assert [float(c) for c in cells[1:]] == [round(r["metrics"][key], 3) for r in rows]
    assert (image_run / "plots" / "system-guidance-guidance-scale.png").is_file()
