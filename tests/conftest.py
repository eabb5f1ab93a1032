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


# PostgreSQL: the server named by CXRLT_TEST_POSTGRES (a SQLAlchemy URL of a maintenance
# database, e.g. postgresql+psycopg://root@/test?host=/var/run/postgresql). Without it the
# PostgreSQL tests skip, with that reason; with CXRLT_REQUIRE_POSTGRES=1, or with the variable
# set and the server unreachable, they fail (CI sets the variable, so CI never skips them).
POSTGRES_ENV = "CXRLT_TEST_POSTGRES"


@pytest.fixture(scope="session")
def postgres_server():
    """An AUTOCOMMIT engine on the maintenance database, checked once per session."""
    from sqlalchemy import create_engine

    url = os.environ.get(POSTGRES_ENV, "").strip()
    if not url:
        if os.environ.get("CXRLT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"CXRLT_REQUIRE_POSTGRES=1 but {POSTGRES_ENV} is not set", pytrace=False)
        pytest.skip(
            f"{POSTGRES_ENV} is not set (a SQLAlchemy URL of a PostgreSQL maintenance database, "
            "e.g. postgresql+psycopg://root@/test?host=/var/run/postgresql)"
        )
    try:
        engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server fails the run
        pytest.fail(f"{POSTGRES_ENV}={url}: cannot reach the server ({exc})", pytrace=False)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_server):
    """The URL of a new, empty database ``cxrlt_test_<random>``, dropped after the test."""
    import secrets

    name = f"cxrlt_test_{secrets.token_hex(6)}"
    with postgres_server.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with postgres_server.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
