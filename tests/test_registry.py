import os
import subprocess
import sys
from pathlib import Path

import pytest

from lift3d.errors import PluginError, RegistryError
from lift3d.geometry.base import BaseImplicitGeometry
from lift3d.materials.base import BaseMaterial
from lift3d.registry import find, load_plugin_file, register


def test_find_returns_registered_class():
    from lift3d.geometry.implicit_volume import ImplicitVolume

    assert find("implicit-volume") is ImplicitVolume
    assert find("implicit-volume", BaseImplicitGeometry) is ImplicitVolume


def test_duplicate_name_raises():
    @register("test-dup-material")
    class A(BaseMaterial):
        pass

    with pytest.raises(RegistryError, match="already registered"):

        @register("test-dup-material")
        class B(BaseMaterial):
            pass


def test_unknown_name_suggests_closest():
    with pytest.raises(RegistryError, match="did you mean 'implicit-volume'"):
        find("implicit-volum")


def test_wrong_kind_is_rejected():
    with pytest.raises(RegistryError, match="is not a BaseMaterial"):
        find("implicit-volume", BaseMaterial)


def test_plugin_file_registers_module(tmp_path):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(
        "from lift3d.registry import register\n"
        "from lift3d.materials.base import BaseMaterial\n"
        "@register('test-plugin-material')\n"
        "class M(BaseMaterial):\n"
        "    def forward(self, features, normal, points, light_position):\n"
        "        return features[:, :3] * 0\n"
    )
    load_plugin_file(plugin)
    assert find("test-plugin-material", BaseMaterial).__name__ == "M"


def test_broken_plugin_is_an_error(tmp_path):
    plugin = tmp_path / "broken.py"
    plugin.write_text("import a_module_that_does_not_exist\n")
    with pytest.raises(PluginError, match="failed to import"):
        load_plugin_file(plugin)


def test_cli_broken_plugin_exits_nonzero(tmp_path):
    plugin = tmp_path / "broken.py"
    plugin.write_text("raise RuntimeError('boom')\n")
    root = Path(__file__).parents[1]
    proc = subprocess.run(
        [sys.executable, str(root / "launch.py"), "--config", str(root / "configs/dreamfusion-if.yaml"), "--train",
         "--plugin", str(plugin), f"exp_root_dir={tmp_path / 'out'}", "system.prompt_processor.prompt=a red cube"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "failed to import" in proc.stderr and "boom" in proc.stderr
    assert not (tmp_path / "out").exists()


def _fake_distribution(root: Path, module_source: str) -> None:
    (root / "fake_lift3d_plugin.py").write_text(module_source)
    dist = root / "fake_lift3d_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-lift3d-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[lift3d.plugins]\nfake = fake_lift3d_plugin\n")


def test_entry_point_plugins_are_loaded(tmp_path):
    _fake_distribution(tmp_path, "from lift3d.registry import register\nfrom lift3d.materials.base import BaseMaterial\n"
                                 "@register('entry-point-material')\nclass EP(BaseMaterial):\n    pass\n")
    code = "from lift3d.registry import find; print(find('entry-point-material').__name__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "EP"


def test_broken_entry_point_plugin_is_an_error(tmp_path):
    _fake_distribution(tmp_path, "raise ImportError('missing dependency xyz')\n")
    code = "from lift3d.registry import find; find('implicit-volume')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode != 0
    assert "plugin entry point 'fake'" in proc.stderr and "missing dependency xyz" in proc.stderr
