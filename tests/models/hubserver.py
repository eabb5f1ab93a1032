"""A hub-shaped HTTP server on 127.0.0.1 for the fetch tests (stdlib http.server in a thread).

It answers what ``huggingface_hub.hf_hub_download`` asks for a pinned commit:
``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}`` with the headers the hub sends
(``X-Repo-Commit``, ``ETag``/``X-Linked-Etag`` = the file's sha256, ``X-Linked-Size``,
``Content-Length``), and 404 with ``X-Error-Code: EntryNotFound`` for anything else. Every
request is recorded. Misbehaviours for the tests: ``tamper`` (serve other bytes than the pinned
ones for a file), ``drop`` (send half of a file, then close the connection; later tries of it
get the headers and nothing).
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class Hub:
    files: dict[tuple[str, str, str], bytes] = field(default_factory=dict)  # (repo, rev, name)
    tamper: dict[str, bytes] = field(default_factory=dict)  # name -> bytes served instead
    drop: set[str] = field(default_factory=set)  # names whose GET is cut off
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, host)
    dropped: dict[str, int] = field(default_factory=dict)
    redirect: dict[str, str] = field(default_factory=dict)  # name -> base URL to send GETs to
    slow: set[str] = field(default_factory=set)  # names sent in small pieces with pauses

    def add(self, repo: str, rev: str, name: str, data: bytes) -> None:
        self.files[(repo, rev, name)] = data


def _handler(hub: Hub):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):  # quiet
            pass

        def _lookup(self):
            path = unquote(urlsplit(self.path).path)
            parts = path.strip("/").split("/")
            # owner/name/resolve/rev/filename...
            if len(parts) >= 5 and parts[2] == "resolve":
                key = ("/".join(parts[:2]), parts[3], "/".join(parts[4:]))
                if key in hub.files:
                    return key
            return None

        def _do(self, body: bool) -> None:
            hub.requests.append((self.command, self.path, self.headers.get("Host", "")))
            key = self._lookup()
            if key is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            repo, rev, name = key
            if name in hub.redirect:  # like the hub's large files: metadata here, bytes elsewhere
                data = hub.files[key]
                sha = hashlib.sha256(data).hexdigest()
                self.send_response(302)
                self.send_header("Location", hub.redirect[name] + self.path)
                self.send_header("X-Repo-Commit", rev)
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            pinned = hub.files[key]
            data = hub.tamper.get(name, pinned)
            sha = hashlib.sha256(data).hexdigest()
            self.send_response(200)
            self.send_header("X-Repo-Commit", rev)
            self.send_header("ETag", f'"{sha}"')
            self.send_header("X-Linked-Etag", f'"{sha}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if not body:
                return
            if name in hub.drop:
                n = hub.dropped.get(name, 0)
                hub.dropped[name] = n + 1
                if n == 0:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if name in hub.slow:
                try:
                    for i in range(0, len(data), 64 * 1024):
                        self.wfile.write(data[i : i + 64 * 1024])
                        self.wfile.flush()
                        time.sleep(0.05)
                except OSError:  # the client hung up (a cancel)
                    self.close_connection = True
                return
            self.wfile.write(data)

        def do_HEAD(self):  # noqa: N802
            self._do(body=False)

        def do_GET(self):  # noqa: N802
            self._do(body=True)

    return H


class HubServer:
    """``with HubServer(hub) as url:`` serves ``hub`` on a free port of 127.0.0.1."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(10)
