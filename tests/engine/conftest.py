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
    missing = [n for n, p in zip(names, paths, strict=True) if p is None]
    if missing:
        pytest.fail(
            f"pydicom-data test files {', '.join(missing)} are missing: the engine tests need the "
            "pydicom-data package (in the test extra): pip install -e '.[test]'",
            pytrace=False,
        )
    return paths
