"""The one place the app goes online on its own: huggingface_hub, for ``cxrlt models fetch``.

The app runs with ``HF_HUB_OFFLINE=1`` (:func:`engine.offline.go_offline`). :func:`hub_online`
lifts that for huggingface_hub alone and only while a fetch runs: the environment (which child
processes inherit) stays offline, and huggingface_hub's HTTP client is replaced by one that
refuses every request that is not for the configured endpoint or for a place the endpoint itself
redirected to (the hub serves large files from its storage that way). Xet transfers, which run
in native code outside that client, are switched off, so every byte comes through it. On leaving,
offline mode and the default client come back.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

_LOCK = threading.Lock()  # one fetch at a time changes huggingface_hub's globals
_CURRENT: _Gate | None = None  # the gate of the fetch running now


def interrupt() -> None:
    """Close the running fetch's connections (from any thread): a read in progress fails at
    once, and the fetch, whose cancel event the caller set first, reports a cancel."""
    gate = _CURRENT
    for client in list(gate.clients if gate is not None else []):
        try:
            client.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


class HubAccessError(OSError):
    """A request the fetch may not make (another host), or an endpoint that is not a URL."""


def configured_endpoint() -> str:
    """``HF_ENDPOINT`` if set, else huggingface_hub's default endpoint."""
    env = os.environ.get("HF_ENDPOINT", "").strip()
    if env:
        return env.rstrip("/")
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def _origin(url: str) -> tuple[str, str, int]:
    u = urlsplit(str(url))
    port = u.port or (443 if u.scheme == "https" else 80)
    return (u.scheme, (u.hostname or "").lower(), port)


class _Gate:
    """Which origins requests may go to: the endpoint's, and those it redirected to."""

    def __init__(self, endpoint: str) -> None:
        scheme, host, _ = _origin(endpoint)
        if scheme not in ("http", "https") or not host:
            raise HubAccessError(f"endpoint {endpoint!r} is not an http(s) URL")
        self.endpoint = endpoint
        self.allowed = {_origin(endpoint)}
        self.requests: list[str] = []  # every URL requested, in order (for the report and tests)
        self.clients: list = []  # the clients made for this fetch (closed by interrupt())

    def on_request(self, request) -> None:  # noqa: ANN001 - httpx request
        origin = _origin(str(request.url))
        if origin not in self.allowed:
            raise HubAccessError(
                f"refused a request to {origin[0]}://{origin[1]}:{origin[2]}: the fetch only "
                f"talks to {self.endpoint} and the places it redirects to"
            )
        self.requests.append(f"{request.method} {request.url}")

    def on_response(self, response) -> None:  # noqa: ANN001 - httpx response
        location = response.headers.get("Location")
        if location and _origin(str(response.request.url)) in self.allowed:
            target = response.request.url.join(location)
            if target.scheme in ("http", "https"):
                self.allowed.add(_origin(str(target)))


@contextmanager
def hub_online(endpoint: str) -> Iterator[_Gate]:
    """huggingface_hub online for the endpoint only, for the duration of the block."""
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    gate = _Gate(endpoint)

    def factory():  # noqa: ANN202
        import httpx2

        client = httpx2.Client(
            event_hooks={
                "request": [_http.hf_request_event_hook, gate.on_request],
                "response": [gate.on_response],
            },
            follow_redirects=True,
            timeout=None,
        )
        gate.clients.append(client)
        return client

    global _CURRENT
    with _LOCK:
        _CURRENT = gate
        saved = (constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_XET)
        saved_factory = _http._GLOBAL_CLIENT_FACTORY
        constants.HF_HUB_OFFLINE = False
        constants.HF_HUB_DISABLE_XET = True
        _http.set_client_factory(factory)
        try:
            yield gate
        finally:
            _CURRENT = None
            _http.set_client_factory(saved_factory)
            constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_XET = saved


__all__ = ["HubAccessError", "configured_endpoint", "hub_online", "interrupt"]
