"""Mesh export of a geometry with a known shape: the initial density blob."""

import numpy as np
import pytest
import trimesh

from lift3d.encodings.hash_grid import HashGridConfig
from lift3d.errors import RunError
from lift3d.export.isosurface import Mesh, extract_isosurface, vertex_albedo
from lift3d.export.writers import write_glb, write_ply
from lift3d.geometry.implicit_volume import ImplicitVolume
from lift3d.materials.no_material import NoMaterial


def blob():
    import torch

    torch.manual_seed(0)
    cfg = ImplicitVolume.Config(encoding=HashGridConfig(n_levels=4, log2_hashmap_size=10), density_bias="blob_magic3d",
                                density_blob_scale=10.0, density_blob_std=0.5)
    geo = ImplicitVolume(cfg)
    torch.nn.init.zeros_(geo.density_network[-1].weight)
    torch.nn.init.zeros_(geo.density_network[-1].bias)
    return geo


def test_blob_exports_as_a_sphere_of_the_right_radius(tmp_path):
    geo = blob()
    # softplus(10 (1 - r / 0.5)) = 1  <=>  r = 0.5 (1 - softplus^-1(1) / 10)
    expected_r = 0.5 * (1 - np.log(np.e - 1) / 10)
    mesh = extract_isosurface(geo, resolution=64, threshold=1.0)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(radii.mean() - expected_r) < 0.01 and radii.std() < 0.01
    mesh.colors = vertex_albedo(geo, NoMaterial(None), mesh.vertices)
    assert mesh.colors.shape == mesh.vertices.shape and 0 <= mesh.colors.min() and mesh.colors.max() <= 1
    path = tmp_path / "save" / "model.ply"
    write_ply(mesh, path)
    loaded = trimesh.load(path, process=False)
    assert loaded.is_watertight
    assert loaded.volume > 0  # outward winding
    assert abs(loaded.volume - 4 / 3 * np.pi * expected_r**3) < 0.05 * loaded.volume
    assert not list(path.parent.glob("*.tmp*"))


def test_empty_isosurface_is_a_clear_error():
    with pytest.raises(RunError, match="isosurface at density 1e\\+06 is empty"):
        extract_isosurface(blob(), resolution=16, threshold=1e6)


def test_coarse_to_fine_spends_the_grid_on_the_object():
    geo = blob()
    expected_r = 0.5 * (1 - np.log(np.e - 1) / 10)
    plain = extract_isosurface(geo, resolution=64, threshold=1.0)
    fine = extract_isosurface(geo, resolution=64, threshold=1.0, coarse_to_fine=True)
    err = lambda m: np.abs(np.linalg.norm(m.vertices, axis=1) - expected_r).mean()  # noqa: E731
    assert len(fine.faces) > 2 * len(plain.faces)  # smaller cells on the same surface
    assert err(fine) < err(plain) and err(fine) < 0.01


def test_glb_is_written_y_up_and_reads_back_into_the_z_up_world(tmp_path):
    """A box tall along lift3d's up (+z) with its front on +x: in the GLB it stands along +y
    (glTF's up), and lift3d's reader puts every vertex back where it was."""
    from lift3d.eval.mesh_turntable import load_coloured_mesh

    box = trimesh.creation.box((0.2, 0.3, 1.0))
    box.vertices += [0.25, 0.0, 0.1]
    mesh = Mesh(np.asarray(box.vertices, np.float32), np.asarray(box.faces, np.int64))
    uvs = np.full((len(box.vertices), 2), 0.5, np.float32)
    write_glb(mesh, uvs, np.full((4, 4, 3), 0.5, np.float32), tmp_path / "model.glb")
    raw = trimesh.load(tmp_path / "model.glb", force="mesh", process=False)
    assert np.argmax(raw.extents) == 1  # standing in a glTF viewer
    assert np.allclose(raw.bounds[:, 0], box.bounds[:, 0], atol=1e-5)  # x (the front) unchanged
    assert raw.volume > 0  # still wound outward
    back = load_coloured_mesh(tmp_path / "model.glb").mesh
    assert np.allclose(back.bounds, box.bounds, atol=1e-5)
