"""Download a published model at its pinned revision, verify it, install it atomically.

:func:`fetch_model` downloads every pinned file with huggingface_hub into a hidden staging
folder beside the destination, checks each file's size and sha256 against the pin, writes a
``manifest.json`` (what was fetched, from where, at which revision) and only then renames the
staging folder to its final name: an interrupted, cancelled or refused download leaves nothing
but the staging folder, which is removed. :func:`install_published` does that for a list of
models, registers them and points the settings at them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrlt_desktop.models.pins import PublishedModel
from cxrlt_desktop.models.registry import RegisteredModel, Registry


class FetchError(Exception):
    """A fetch that did not install anything; ``str(e)`` is one line saying why."""


class ChecksumMismatch(FetchError):
    def __init__(self, name: str, expected: str, actual: str) -> None:
        self.name, self.expected, self.actual = name, expected, actual
        super().__init__(
            f"{name}: sha256 {actual} does not match the pinned {expected}; refused, "
            "nothing installed"
        )


class FetchCancelled(FetchError):
    def __init__(self) -> None:
        super().__init__("cancelled; nothing installed")


class LicenceNotAccepted(FetchError):
    pass


@dataclass(frozen=True)
class Progress:
    """Where a fetch stands: ``done`` of ``total`` bytes of file ``file`` of model ``model``."""

    model: str
    file: str
    done: int
    total: int | None
    file_index: int
    n_files: int


ProgressFn = Callable[[Progress], None]


def _progress_class(report: ProgressFn | None, cancel: threading.Event | None, info: dict):
    """A tqdm stand-in for huggingface_hub: reports bytes and raises on cancel."""

    class _Bar:
        def __init__(self, *args: Any, total: int | None = None, initial: int = 0, **kw: Any):
            self.n = initial
            self.total = total
            self._emit()

        def __enter__(self):  # noqa: ANN204
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

        def update(self, n: int | float | None = 1) -> None:
            self.n += int(n or 0)
            self._emit()
            if cancel is not None and cancel.is_set():
                raise FetchCancelled()

        def _emit(self) -> None:
            if report is not None:
                report(Progress(total=self.total, done=self.n, **info))

        def close(self) -> None:
            return None

    return _Bar


def sha256_of(path: Path, cancel: threading.Event | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * 2**20):
            h.update(block)
            if cancel is not None and cancel.is_set():
                raise FetchCancelled()
    return h.hexdigest()


def _unreachable(endpoint: str, model: PublishedModel, e: BaseException) -> FetchError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    return FetchError(
        f"cannot reach the model hub at {endpoint} ({first}). Download {model.repo_id} at "
        f"revision {model.revision} on a machine with network access, copy it here and run "
        f"`cxrlt models add PATH --card {model.card}`"
    )


def fetch_model(
    model: PublishedModel,
    dest: Path | str,
    *,
    endpoint: str,
    revision: str | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Install ``model`` as ``dest/<model.name>``; returns that folder.

    Raises
    ------
    FetchError
        Unpinned model, a revision other than the pinned one, the hub unreachable or refusing,
        a size or sha256 that does not match (:class:`ChecksumMismatch`, both hashes named),
        cancelled (:class:`FetchCancelled`). Nothing is installed then.
    """
    if not model.pinned:
        raise FetchError(model.unpinned_message())
    if revision is not None and revision != model.revision:
        raise FetchError(
            f"{model.name}: no checksums are recorded for revision {revision}; this release "
            f"pins {model.revision} (files at another revision cannot be verified)"
        )
    from cxrlt_desktop.paths import private_dir

    dest = private_dir(Path(dest))
    staging = Path(tempfile.mkdtemp(prefix=f".partial-{model.name}-", dir=dest))
    try:
        _download(model, staging, endpoint=endpoint, progress=progress, cancel=cancel)
        shutil.rmtree(staging / ".cache", ignore_errors=True)  # huggingface_hub's bookkeeping
        manifest = {
            "demo": False,
            "name": model.name,
            "title": model.title,
            "role": model.role,
            "arch": model.arch,
            "repo_id": model.repo_id,
            "revision": model.revision,
            "endpoint": endpoint,
            "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in model.files],
            "licence": model.licence.id,
            "card": model.card,
        }
        if model.use == "." and any(f.path == "manifest.json" for f in model.files):
            raise FetchError(f"{model.name}: a pinned file is named manifest.json")
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        final = dest / model.name
        old = None
        if final.exists() or final.is_symlink():
            old = dest / f".old-{model.name}-{os.getpid()}"
            os.replace(final, old)
        os.replace(staging, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return final
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _download(
    model: PublishedModel,
    staging: Path,
    *,
    endpoint: str,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> None:
    from cxrlt_desktop.models.hub import HubAccessError, hub_online

    with hub_online(endpoint):
        import httpx2
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
        from huggingface_hub.errors import OfflineModeIsEnabled

        try:  # one quick try first: an unreachable hub is said at once, not after 5 retries
            get_hf_file_metadata(
                hf_hub_url(
                    model.repo_id, model.files[0].path, revision=model.revision, endpoint=endpoint
                ),
                endpoint=endpoint,
                retry_on_errors=False,
            )
        except HubAccessError as e:
            raise FetchError(f"{model.name}: {e}") from e
        except (httpx2.ConnectError, httpx2.TimeoutException, OfflineModeIsEnabled) as e:
            raise _unreachable(endpoint, model, e) from e
        except Exception:  # noqa: BLE001 - reachable; hf_hub_download reports the rest
            pass
        for i, f in enumerate(model.files):
            if cancel is not None and cancel.is_set():
                raise FetchCancelled()
            info = {
                "model": model.name,
                "file": f.path,
                "file_index": i,
                "n_files": len(model.files),
            }
            try:
                got = Path(
                    hf_hub_download(
                        model.repo_id,
                        f.path,
                        revision=model.revision,
                        local_dir=staging,
                        endpoint=endpoint,
                        tqdm_class=_progress_class(progress, cancel, info),  # type: ignore[arg-type]
                    )
                )
            except FetchError:
                raise
            except Exception as e:
                if cancel is not None and cancel.is_set():  # interrupted by a cancel
                    raise FetchCancelled() from e
                _raise_fetch_error(e, model, f.path, endpoint)
            size = got.stat().st_size
            if size != f.size:
                raise FetchError(
                    f"{model.name}/{f.path}: {size} bytes where the pin says {f.size}; refused, "
                    "nothing installed"
                )
            actual = sha256_of(got, cancel)
            if actual != f.sha256:
                raise ChecksumMismatch(f"{model.name}/{f.path}", str(f.sha256), actual)


def _network_cause(e: BaseException) -> BaseException | None:
    """The connection failure behind ``e`` (huggingface_hub wraps it), if any."""
    import httpx2
    from huggingface_hub.errors import OfflineModeIsEnabled

    seen = 0
    cur: BaseException | None = e
    while cur is not None and seen < 10:
        if isinstance(cur, httpx2.ConnectError | httpx2.TimeoutException | OfflineModeIsEnabled):
            return cur
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def _raise_fetch_error(exc: Exception, model: PublishedModel, path: str, endpoint: str) -> None:
    """Raise the one-line :class:`FetchError` for what ``hf_hub_download`` raised."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    from cxrlt_desktop.models.hub import HubAccessError

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if isinstance(exc, HubAccessError):
        raise FetchError(f"{model.name}: {exc}") from exc
    cause = _network_cause(exc)
    if cause is not None:
        raise _unreachable(endpoint, model, cause) from exc
    if isinstance(exc, HfHubHTTPError):
        raise FetchError(f"{model.name}: the hub refused {path} ({first})") from exc
    if isinstance(exc, OSError | httpx2.HTTPError):
        raise FetchError(
            f"{model.name}: download of {path} failed ({first}); nothing installed"
        ) from exc
    raise FetchError(f"{model.name}: download of {path} failed ({first})") from exc


def model_path(model: PublishedModel, folder: Path) -> Path:
    """What the settings point at inside an installed model folder."""
    return folder if model.use == "." else folder / model.use


def install_published(
    models: list[PublishedModel],
    *,
    dest: Path | str,
    endpoint: str,
    registry: Registry,
    settings_path: Path | str | None = None,
    revision: str | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    configure: bool = True,
) -> list[RegisteredModel]:
    """Fetch each model (licences must have been accepted), register it, configure settings.

    ``configure=False`` leaves the settings file alone (the GUI fills its settings dialog and
    saves on OK).

    The settings are changed after every model is installed: Task 1 checkpoints become the
    fetched one plus any registered MLP-head checkpoint already configured (ensemble weights
    back to the defaults); the CLIP folder becomes the fetched one.
    """
    for m in models:
        if not registry.licence_accepted(m.licence.id, m.licence.text):
            raise LicenceNotAccepted(
                f"{m.name}: its licence ({m.licence.title}) has not been accepted; accept it "
                "first (cxrlt models fetch --accept-licence, or the Settings button)"
            )
    done: list[RegisteredModel] = []
    for m in models:
        folder = fetch_model(
            m, dest, endpoint=endpoint, revision=revision, progress=progress, cancel=cancel
        )
        target = model_path(m, folder)
        weights = next(f for f in m.files if f.path.endswith((".safetensors", ".bin", ".pth")))
        entry = RegisteredModel(
            name=m.name,
            role=m.role,
            arch=m.arch,
            path=str(target.resolve()),
            sha256=str(weights.sha256),
            size=sum(int(f.size or 0) for f in m.files),
            source=f"{m.repo_id}@{m.revision}",
            licence=m.licence.id,
            card=m.card,
            demo=False,
            verified="pinned",
        )
        registry.put(entry)
        registry.save()
        done.append(entry)
    if configure:
        configure_settings(done, registry, settings_path)
    return done


def configure_settings(
    entries: list[RegisteredModel], registry: Registry, settings_path: Path | str | None
) -> Path:
    """Point the settings' [models] at ``entries``; returns the settings file written."""
    from cxrlt_desktop.settings import Settings

    s = Settings.load(settings_path)
    task1 = [e for e in entries if e.role.startswith("task1")]
    clip = [e for e in entries if e.role == "clip"]
    if task1:
        keep = []
        for c in s.task1_checkpoints:
            reg = next((r for r in registry.models if Path(r.path) == Path(c).expanduser()), None)
            if reg is not None and reg.role == "task1-mlp" and not reg.demo:
                keep.append(c)
        s.task1_checkpoints = [Path(e.path) for e in task1] + keep
        s.task1_weights = None
        s.task1_arch = None
    if clip:
        s.clip_model = Path(clip[-1].path)
    return s.save(settings_path)


__all__ = [
    "ChecksumMismatch",
    "FetchCancelled",
    "FetchError",
    "LicenceNotAccepted",
    "Progress",
    "configure_settings",
    "fetch_model",
    "install_published",
    "model_path",
    "sha256_of",
]
