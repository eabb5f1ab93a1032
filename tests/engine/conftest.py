"""Shared fixtures for the engine tests: random-weight checkpoints and a tiny CLIP folder.

Session-scoped so that each model file is written once per run (they take ~1 s each).
"""

from __future__ import annotations

import pytest

SIZE = 64  # Task 1 input size in tests: the behaviour does not depend on 512


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engine-models")


@pytest.fixture(scope="session")
def csra_file(model_dir):
    from engine.random_models import write_random_task1

    return write_random_task1(model_dir / "csra.safetensors", head="csra", seed=0)


@pytest.fixture(scope="session")
def mlp_file(model_dir):
    from engine.random_models import write_random_task1

    # the authors' training-code layout: wrapped, DataParallel prefix, torch.save
    return write_random_task1(
        model_dir / "mlp.pth", head="mlp", seed=1, layout="pth", wrap=True, prefix=True
    )


@pytest.fixture(scope="session")
def clip_dir(model_dir):
    from engine.random_models import write_tiny_clip

    return write_tiny_clip(model_dir / "clip", seed=0)


@pytest.fixture(scope="session")
def rg1_files():
    from pydicom.data import get_testdata_file

    names = ["RG1_UNCR.dcm", "RG1_J2KR.dcm"]
    paths = [get_testdata_file(n, download=False) for n in names]
    if any(p is None for p in paths):
        pytest.skip("pydicom-data RG1 files are not installed")
    return paths
