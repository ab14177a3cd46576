"""The install is reproducible: one lock file, used by the README's set-up command and by CI."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_constraints_pin_every_package_exactly_and_torch_to_the_cpu_build():
    lines = [x.strip() for x in (ROOT / "constraints.txt").read_text().splitlines() if x.strip() and not x.startswith("#")]
    pins = dict(re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line).groups() for line in lines)
    assert len(pins) == len(lines)  # every line is name==version
    assert pins["torch"] == "2.13.0"  # no local tag: ==2.13.0 admits the CPU build on disk
    for needed in ("diffusers", "transformers", "lightning", "omegaconf", "trimesh", "pytest"):
        assert needed in {k.lower() for k in pins}, needed


def test_readme_setup_and_ci_install_with_the_constraints():
    readme = (ROOT / "README.md").read_text()
    setup = next(line for line in readme.splitlines() if line.startswith("python3 -m venv") and "launch.py" in line)
    assert 'pip install -c constraints.txt -e ".[dev]"' in setup and setup.index("torch==2.13.0") < setup.index("constraints.txt")
    ci = (ROOT / ".ci" / "run").read_text()
    assert '-c constraints.txt -e ".[dev]"' in ci
