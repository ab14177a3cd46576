import os

# Under pytest-xdist (the README's `-n 2`) each worker and the runs it starts take one thread, so two
# workers share the two cores instead of oversubscribing them (lift3d honours OMP_NUM_THREADS).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

# shape annotations (jaxtyping) are checked at run time in the tests; must be set before lift3d imports
os.environ.setdefault("LIFT3D_TYPECHECK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(scope="session")
def latent_prior(tmp_path_factory):
    from tiny_priors import build_latent_prior

    return build_latent_prior(tmp_path_factory.mktemp("priors") / "tiny-sd")


@pytest.fixture(scope="session")
def pixel_prior(tmp_path_factory):
    from tiny_priors import build_pixel_prior

    return build_pixel_prior(tmp_path_factory.mktemp("priors") / "tiny-if")


@pytest.fixture(scope="session")
def camera_pixel_prior(tmp_path_factory):
    from tiny_priors import build_pixel_prior

    return build_pixel_prior(tmp_path_factory.mktemp("priors") / "tiny-camera", camera_conditioned=True)


@pytest.fixture(scope="session")
def latent_view_prior(tmp_path_factory):
    from tiny_priors import build_latent_view_prior

    return build_latent_view_prior(tmp_path_factory.mktemp("priors") / "tiny-zero123", camera_convention="zero123")


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFT3D_CACHE_DIR", str(tmp_path / "cache"))
