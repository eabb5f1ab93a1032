import os

# Set before anything imports huggingface_hub or Qt.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Keep tests from touching the real user data folder.
os.environ.setdefault(
    "CXRLT_DATA_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"), "cxrlt-test-data")
)

import pytest  # noqa: E402


def pytest_configure(config):
    """Markers used by the tests (also listed in pyproject.toml; registering twice is harmless)."""
    config.addinivalue_line(
        "markers", "gpu: needs a CUDA GPU; skipped, with that reason, where there is none"
    )


TINY_SIZE = 64  # Task 1 input size in tests: the behaviour under test does not depend on 512


@pytest.fixture(scope="session")
def csra_ckpt(tmp_path_factory):
    """A random-weight convnextv2_atto CSRA checkpoint in the published safetensors layout."""
    from engine.random_models import write_random_task1

    return write_random_task1(
        tmp_path_factory.mktemp("models") / "csra.safetensors", head="csra", seed=3
    )


@pytest.fixture(scope="session")
def predictor(csra_ckpt):
    """A fast-mode CPU predictor over :func:`csra_ckpt` at 64 px, shared by the whole session."""
    import torch

    from engine.predictor import EngineConfig, Predictor

    torch.set_num_threads(1)
    return Predictor(
        EngineConfig(
            task1_checkpoints=[csra_ckpt],
            task1_arch="convnextv2_atto",
            mode="fast",
            image_size=TINY_SIZE,
            device="cpu",
            batch_size=4,
            decode_workers=1,
        )
    )
