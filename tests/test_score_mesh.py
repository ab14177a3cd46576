"""`lift3d eval score`: meshes from any tool scored on lift3d's cameras with lift3d's metrics."""

import json

import numpy as np
import pytest
import trimesh
from PIL import Image

from lift3d.eval.mesh_turntable import load_coloured_mesh
from lift3d.eval.score_mesh import score_mesh
from lift3d.priors.world.catalog import COLOURS
from lift3d.priors.world.ground_truth import ground_truth_mesh
from lift3d.utils.axes import Y_UP_TO_Z_UP, Z_UP_TO_Y_UP, homogeneous


def _rgba(colour):
    return [int(round(255 * c)) for c in COLOURS[colour]] + [255]


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def lift3d_eval(capsys):
    """``lift3d eval ...`` through the CLI's entry point, in this process (exit code, stdout, stderr)."""
    from lift3d.cli import main

    def call(*args):
        with pytest.raises(SystemExit) as exit_:
            main(["eval", *map(str, args)])
        out = capsys.readouterr()
        return Result(exit_.value.code, out.out, out.err)

    return call


@pytest.fixture(scope="module")
def house_glb(tmp_path_factory):
    mesh = ground_truth_mesh("house")
    mesh.visual.vertex_colors = _rgba("red")
    mesh.apply_transform(homogeneous(Z_UP_TO_Y_UP))  # a GLB as the glTF spec has it: +y up
    path = tmp_path_factory.mktemp("meshes") / "house.glb"
    mesh.export(path)
    return path


def test_ground_truth_mesh_scores_near_perfect(house_glb, tmp_path):
    row = score_mesh(house_glb, "a red house", tmp_path / "ext")
    m = row["metrics"]
    assert m["silhouette_iou"] >= 0.98
    assert m["volume_iou"] >= 0.98
    assert m["chamfer"] < 0.015  # sampling noise only: both surfaces are the same
    assert m["r_precision"] >= 0.9
    assert m["janus"] == 0.0
    stored = [json.loads(line) for line in (tmp_path / "ext" / "results.jsonl").read_text().splitlines()]
    assert stored[0]["metrics"] == pytest.approx(m)
    assert len(list((tmp_path / "ext" / "runs" / row["run_id"] / "turntable").glob("*.png"))) == 60


def test_a_sphere_for_a_cube_scores_clearly_worse(tmp_path):
    cube = trimesh.creation.box((1.0, 1.0, 1.0))
    cube.vertices = cube.vertices * (ground_truth_mesh("cube", 64).extents / 1.0)
    sphere = trimesh.creation.icosphere(4, 0.55)
    scores = {}
    for name, mesh in (("cube", cube), ("sphere", sphere)):
        mesh.visual.vertex_colors = _rgba("red")
        mesh.export(tmp_path / f"{name}.ply")
        scores[name] = score_mesh(tmp_path / f"{name}.ply", "a red cube", tmp_path / "ext")["metrics"]
    good, bad = scores["cube"], scores["sphere"]
    assert good["silhouette_iou"] > bad["silhouette_iou"] + 0.05
    assert good["volume_iou"] > bad["volume_iou"] + 0.15
    assert bad["chamfer"] > 2 * good["chamfer"]
    assert bad["r_precision"] < good["r_precision"]
    # both rows sit in one results file, so one report compares them
    assert len((tmp_path / "ext" / "results.jsonl").read_text().splitlines()) == 2


def test_textured_obj_is_sampled_through_its_uvs(tmp_path):
    """A texture whose two halves differ, stretched across each face: the front view must show both
    colours sharply (sampled per pixel through the uvs), not the purple a vertex average would give."""
    mesh = trimesh.creation.box((0.9, 0.9, 0.9))
    uv = np.where(mesh.vertices[:, 1:2] > 0, 0.75, 0.25) * np.ones((1, 2))  # u runs across y
    tex = np.zeros((8, 8, 3), np.uint8)
    tex[:, :4] = (230, 20, 20)
    tex[:, 4:] = (20, 20, 230)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(tex))
    mesh.export(tmp_path / "box.obj")
    loaded = load_coloured_mesh(tmp_path / "box.obj")
    assert loaded.texture is not None and loaded.uvs is not None
    from lift3d.eval.mesh_turntable import render_turntable
    from lift3d.eval.score_mesh import DEFAULT_PRESET, _cameras

    cams, _ = _cameras(DEFAULT_PRESET)
    tt = render_turntable(loaded, cams[:1])  # azimuth 0: looking at the +x face
    fg = tt.opacity[0] > 0.5
    rgb = tt.rgb[0][:, fg]
    assert ((rgb[0] > 2 * rgb[2]).float().mean() > 0.2) and ((rgb[2] > 2 * rgb[0]).float().mean() > 0.2)


def test_glb_is_read_y_up_and_other_files_z_up_unless_told(tmp_path):
    tall_y = trimesh.creation.box((0.2, 1.0, 0.3))  # tall along y, as a glTF file stores "up"
    tall_y.export(tmp_path / "tall.glb")
    assert np.argmax(load_coloured_mesh(tmp_path / "tall.glb").mesh.extents) == 2  # auto: glTF is y-up
    assert np.argmax(load_coloured_mesh(tmp_path / "tall.glb", up="y").mesh.extents) == 2
    assert np.argmax(load_coloured_mesh(tmp_path / "tall.glb", up="z").mesh.extents) == 1
    tall_z = trimesh.creation.box((0.2, 0.3, 1.0))
    tall_z.export(tmp_path / "tall.ply")
    assert np.argmax(load_coloured_mesh(tmp_path / "tall.ply").mesh.extents) == 2  # auto: other files are z-up
    assert np.argmax(load_coloured_mesh(tmp_path / "tall.ply", up="y").mesh.extents) == 1
    assert np.allclose(Y_UP_TO_Z_UP @ np.array([0.0, 1.0, 0.0]), [0, 0, 1])
    assert np.allclose(Y_UP_TO_Z_UP @ Z_UP_TO_Y_UP, np.eye(3))
    assert np.isclose(np.linalg.det(Y_UP_TO_Z_UP), 1.0)  # a rotation: faces keep their winding


def test_score_cli_errors_are_one_line_and_touch_nothing(tmp_path, house_glb, lift3d_eval):
    bogus = tmp_path / "notes.glb"
    bogus.write_text("this is not a mesh")
    proc = lift3d_eval("score", "--mesh", str(bogus), "--prompt", "a red house", "--out", str(tmp_path / "o1"))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
    assert "not a mesh" in proc.stderr
    assert not (tmp_path / "o1").exists()

    other = tmp_path / "busy"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    proc = lift3d_eval("score", "--mesh", str(house_glb), "--prompt", "a red house", "--out", str(other))
    assert proc.returncode == 2 and "not a lift3d eval folder" in proc.stderr
    assert sorted(p.name for p in other.iterdir()) == ["thesis.tex"] and (other / "thesis.tex").read_text() == "precious"

    proc = lift3d_eval("score", "--mesh", str(house_glb), "--prompt", "a photo of a dog", "--out", str(tmp_path / "o2"))
    assert proc.returncode == 2 and "--clip-model" in proc.stderr


def test_score_cli_writes_results_and_report(tmp_path, house_glb, lift3d_eval):
    proc = lift3d_eval("score", "--mesh", str(house_glb), "--prompt", "a red house", "--out", str(tmp_path / "ext"), "--name", "gt-house")
    assert proc.returncode == 0, proc.stderr
    row = json.loads((tmp_path / "ext" / "results.jsonl").read_text().splitlines()[0])
    assert row["method"] == "gt-house"
    report = (tmp_path / "ext" / "report.md").read_text()
    assert f"| gt-house | {row['metrics']['silhouette_iou']:.3f} |" in report
