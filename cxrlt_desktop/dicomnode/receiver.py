"""The DICOM receiver: a pynetdicom SCP for Verification and projection-radiography storage.

What it accepts
---------------
- C-ECHO (Verification).
- C-STORE of Computed Radiography, Digital X-Ray (for presentation and for processing) and
  Secondary Capture images, in the transfer syntaxes the input layer decodes (uncompressed,
  deflated, RLE, JPEG, JPEG-LS, JPEG 2000, HTJ2K). Compressed objects are kept as sent.
- Every other storage SOP class is accepted at association (so that the sender gets a DIMSE
  status per object instead of a bare negotiation failure) and each object is refused with
  0x0122 "SOP class not supported", recorded in the Problems list.

For each object: free space above the floor, else 0xA700 (out of resources) and nothing written;
written to a temporary file and validated by the input layer (``engine.imageio.read_header``);
UIDs checked (``inbox.valid_uid``) before they become path parts, else 0xA900 and nothing kept;
moved into ``<inbox>/<Study>/<Series>/<SOP>.dcm``; added to the library by a single writer
thread (``library.scanning.add_files``, batches of what arrived meanwhile), queued for scoring
for every active model set (``library.queue.enqueue_for_active_sets``: department workers take
the jobs) and handed to ``on_added`` (``cxrlt listen``'s in-process scorer, the GUI). An object the input layer finds unusable is still added (so it shows in
Problems with its reason) and answered with 0xC000 "cannot understand" and that reason.

Associations: a calling AE title not on the allow-list (when one is set; entries ``AET`` or
``AET@HOST``) is rejected with "calling AE title not recognised" before any negotiation; at
most ``max_associations`` at once; PDUs up to ``max_pdu`` bytes; optional TLS (an
``ssl.SSLContext`` from :func:`tls_context`).
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cxrlt_desktop.dicomnode.inbox import Inbox, NoSpace, valid_uid

log = logging.getLogger(__name__)

# Storage SOP classes of projection radiography (PS3.4 Annex B).
CR = "1.2.840.10008.5.1.4.1.1.1"
DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
IMAGE_SOP_CLASSES = (CR, DX_PRESENTATION, DX_PROCESSING, SECONDARY_CAPTURE)

# DIMSE statuses (PS3.7 Annex C, PS3.4 Table B.2-1).
SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DATA_SET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110

DEFAULT_MAX_PDU = 262_144
DEFAULT_MAX_ASSOCIATIONS = 8


def image_transfer_syntaxes() -> list[str]:
    """The transfer syntaxes the input layer decodes: native ones first, then the compressed
    ones it has a decoder plugin for (``engine.imageio.plugins``)."""
    from pydicom.uid import (
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
    )

    from engine.imageio.plugins import PREFERRED_PLUGINS

    return [
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        *PREFERRED_PLUGINS,
    ]


@dataclass
class NodeConfig:
    """The receiver's settings (``[dicom_node]`` plus command-line overrides)."""

    inbox: Path
    aet: str = "CXRLT"
    port: int = 11112
    bind: str = "127.0.0.1"
    allow: list[str] = field(default_factory=list)
    min_free_mb: int = 1024
    max_associations: int = DEFAULT_MAX_ASSOCIATIONS
    max_pdu: int = DEFAULT_MAX_PDU
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None


def node_config(node: dict[str, Any], **overrides: Any) -> NodeConfig:
    """A :class:`NodeConfig` from a ``Settings.dicom_node`` dict; ``overrides`` that are not None
    win (the command line). The inbox defaults to ``paths.data_dir()/inbox``."""
    from cxrlt_desktop.paths import data_dir

    values = {k: v for k, v in node.items() if k in NodeConfig.__dataclass_fields__}
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("inbox") is None:
        values["inbox"] = data_dir() / "inbox"
    values["inbox"] = Path(values["inbox"]).expanduser()
    return NodeConfig(**values)


def tls_context(cert: Path, key: Path, ca: Path | None = None) -> ssl.SSLContext:
    """A server TLS context: this node's certificate and key; with ``ca``, peers must present a
    certificate signed by it (mutual TLS). Raises OSError/ssl.SSLError for unusable files."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    if ca is not None:
        ctx.load_verify_locations(cafile=str(ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class AllowList:
    """Calling AE titles allowed to associate: ``AET`` (from anywhere) or ``AET@HOST`` (from
    that host only: an IP address, or a name resolved once when the list is built). Empty:
    everyone."""

    def __init__(self, entries: list[str]) -> None:
        self.entries = list(entries)
        self.anywhere: set[str] = set()
        self.hosts: dict[str, set[str]] = {}
        for e in entries:
            aet, _, host = e.partition("@")
            aet = aet.strip()
            if not host.strip():
                self.anywhere.add(aet)
                continue
            self.hosts.setdefault(aet, set()).update(_addresses(host.strip()))

    def __bool__(self) -> bool:
        return bool(self.entries)

    def permits(self, aet: str, host: str) -> bool:
        if not self.entries:
            return True
        aet = aet.strip()
        return aet in self.anywhere or host in self.hosts.get(aet, set())


def _addresses(host: str) -> set[str]:
    out = {host}
    try:
        out.update(info[4][0] for info in socket.getaddrinfo(host, None))
    except OSError:
        log.warning("allow-list host %s does not resolve; only the literal text matches", host)
    return out


@dataclass
class Received:
    """One handled C-STORE, for the log and the counters."""

    peer: str
    sop_uid: str
    status: int
    text: str
    path: Path | None = None


@dataclass
class NodeStats:
    stored: int = 0
    unchanged: int = 0
    refused: int = 0
    associations: int = 0
    rejected_associations: int = 0
    last: str = ""


class DicomNode:
    """A listening DICOM node feeding the library.

    Parameters
    ----------
    config
        Where and how to listen, the inbox and its free-space floor.
    store
        The open library store (written only by the node's library thread).
    on_added
        Called in the library thread with each ``AddResult`` (e.g. to score the new images).
    on_event
        Called with each :class:`Received` (in the association's thread): for a log line.
    ssl_context
        TLS for every association (``tls_context``); None: plain TCP.
    """

    def __init__(
        self,
        config: NodeConfig,
        store: Any,
        *,
        on_added: Callable[[Any], None] | None = None,
        on_event: Callable[[Received], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.inbox = Inbox(config.inbox, config.min_free_mb * 1024 * 1024)
        self.allow = AllowList(config.allow)
        self.on_added = on_added
        self.on_event = on_event
        self.ssl_context = ssl_context
        self.stats = NodeStats()
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._server: Any = None
        self._ae: Any = None
        self._feeder: threading.Thread | None = None
        self._stopping = threading.Event()
        self._idle = threading.Condition()
        self._pending = 0

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> tuple[str, int]:
        """Bind and listen (non-blocking); returns the (address, port) bound. Raises OSError when
        the port cannot be bound."""
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import Verification

        self.inbox.clean_partial()
        ae = AE(ae_title=self.config.aet)
        ae.maximum_associations = self.config.max_associations
        ae.maximum_pdu_size = self.config.max_pdu
        ae.acse_timeout = 30
        ae.dimse_timeout = 60
        ae.network_timeout = 120
        ae.add_supported_context(Verification)
        syntaxes = image_transfer_syntaxes()
        for uid in IMAGE_SOP_CLASSES:
            ae.add_supported_context(uid, syntaxes)
        from pynetdicom import StoragePresentationContexts

        for cx in StoragePresentationContexts:
            if cx.abstract_syntax not in IMAGE_SOP_CLASSES:
                ae.add_supported_context(cx.abstract_syntax, syntaxes)
        handlers = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
        ]
        self._feeder = threading.Thread(target=self._feed, name="dicomnode-library", daemon=True)
        self._feeder.start()
        self._server = ae.start_server(
            (self.config.bind, self.config.port),
            block=False,
            evt_handlers=handlers,
            ssl_context=self.ssl_context,
        )
        self._ae = ae
        host, port = self._server.server_address[:2]
        return host, port

    def stop(self, timeout: float = 30.0) -> None:
        """Stop listening, end the open associations, then write what is queued to the library."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._ae is not None:
            self._ae.shutdown()
            self._ae = None
        self._stopping.set()
        self._queue.put(None)
        if self._feeder is not None:
            self._feeder.join(timeout)
            self._feeder = None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every object received so far is in the library (tests, benchmark)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    @property
    def listening(self) -> bool:
        return self._server is not None

    # -- association -------------------------------------------------------------------------

    def _on_requested(self, event: Any) -> None:
        aet = event.assoc.requestor.primitive.calling_ae_title
        host = event.assoc.requestor.address
        if self.allow.permits(aet, host):
            with self._lock:
                self.stats.associations += 1
            return
        with self._lock:
            self.stats.rejected_associations += 1
        log.warning("association from %s@%s rejected: calling AE title not allowed", aet, host)
        self._emit(Received(f"{aet}@{host}", "", -1, "association rejected: AE not allowed"))
        # permanent, service user, calling AE title not recognised
        event.assoc.acse.send_reject(0x01, 0x01, 0x03)
        event.assoc.kill()  # returns once the reject is sent and the connection closed

    def _on_echo(self, event: Any) -> int:
        return SUCCESS

    def _peer(self, event: Any) -> str:
        r = event.assoc.requestor
        return f"{r.ae_title.strip()}@{r.address}"

    def _emit(self, rec: Received) -> None:
        with self._lock:
            self.stats.last = rec.text
        if self.on_event is not None:
            try:
                self.on_event(rec)
            except Exception:  # noqa: BLE001 - a log callback must not fail a store
                log.exception("on_event failed")

    def _status(self, rec: Received) -> Any:
        from pydicom.dataset import Dataset

        self._emit(rec)
        if rec.status == SUCCESS:
            return SUCCESS
        ds = Dataset()
        ds.Status = rec.status
        ds.ErrorComment = rec.text.encode("ascii", "replace").decode()[:64]
        return ds

    def _refuse(self, peer: str, key: str, sop_uid: str, status: int, reason: str) -> Any:
        with self._lock:
            self.stats.refused += 1
        source = f"dicom://{peer}/{key}"
        self._put(("problem", source, " ".join(reason.split())))
        return self._status(Received(peer, sop_uid, status, reason))

    def _on_store(self, event: Any) -> Any:
        from pydicom.uid import UID

        peer = self._peer(event)
        sop_class = str(event.request.AffectedSOPClassUID)
        sop_uid = str(event.request.AffectedSOPInstanceUID)
        if sop_class not in IMAGE_SOP_CLASSES:
            name = UID(sop_class).name if valid_uid(sop_class) else "unknown"
            return self._refuse(
                peer,
                f"sop-class/{sop_class if valid_uid(sop_class) else 'invalid'}",
                sop_uid,
                SOP_CLASS_NOT_SUPPORTED,
                f"refused: SOP class {name} ({sop_class[:64]}) is not a projection radiograph "
                f"(CR, DX or secondary capture); last SOP instance {sop_uid[:64]}",
            )
        try:
            data = event.encoded_dataset(include_meta=True)
            staged = self.inbox.stage(data)
        except NoSpace as exc:
            return self._status(
                Received(peer, sop_uid, OUT_OF_RESOURCES, f"out of resources: {exc}")
            )
        except OSError as exc:
            log.error("cannot write to the inbox %s: %s", self.inbox.root, exc)
            return self._status(
                Received(peer, sop_uid, PROCESSING_FAILURE, f"cannot write to the inbox: {exc}")
            )
        return self._place(peer, sop_uid, staged)

    def _place(self, peer: str, sop_uid: str, staged: Any) -> Any:
        from engine.imageio import read_header

        head = read_header(staged.path)
        meta = head.meta or {}
        study, series = meta.get("StudyInstanceUID"), meta.get("SeriesInstanceUID")
        try:
            if meta.get("SOPInstanceUID") != sop_uid:
                raise ValueError(
                    f"the data set's SOPInstanceUID {str(meta.get('SOPInstanceUID'))[:64]!r} "
                    "differs from the C-STORE request's"
                )
            target = self.inbox.path_for(study, series, sop_uid)
        except ValueError as exc:
            self.inbox.discard(staged)
            reason = head.reason if not head.ok and head.reason else str(exc)
            key = f"sop/{sop_uid}" if valid_uid(sop_uid) else "invalid-uid"
            return self._refuse(peer, key, sop_uid, DATA_SET_MISMATCH, f"refused: {reason}")
        try:
            outcome = self.inbox.commit(staged, target)
        except OSError as exc:
            self.inbox.discard(staged)
            return self._status(
                Received(peer, sop_uid, PROCESSING_FAILURE, f"cannot write to the inbox: {exc}")
            )
        with self._lock:
            if outcome.value == "unchanged":
                self.stats.unchanged += 1
            else:
                self.stats.stored += 1
        if outcome.value != "unchanged":
            self._put(("file", str(target), replace(head, path=target)))
        if not head.ok:
            return self._status(
                Received(peer, sop_uid, CANNOT_UNDERSTAND, f"not usable: {head.reason}", target)
            )
        return self._status(Received(peer, sop_uid, SUCCESS, f"{outcome.value} {target}", target))

    # -- the library thread --------------------------------------------------------------------

    def _put(self, item: tuple) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(item)

    def _done(self, n: int) -> None:
        with self._idle:
            self._pending -= n
            self._idle.notify_all()

    def _feed(self) -> None:
        """Write what the associations received into the library: everything queued at the
        moment forms one batch (one transaction); a failed batch is retried until it is
        written or the node stops (the files stay in the inbox either way)."""
        while True:
            item = self._queue.get()
            items = [] if item is None else [item]
            stop = item is None
            while True:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                else:
                    items.append(nxt)
            if items:
                self._write(items)
                self._done(len(items))
            if stop:
                return

    def _write(self, items: list[tuple]) -> None:
        from cxrlt_desktop.library.queue import enqueue_for_active_sets
        from cxrlt_desktop.library.scanning import add_files, record_refused

        delay = 0.5
        while True:
            try:
                for _kind, source, reason in (i for i in items if i[0] == "problem"):
                    record_refused(self.store, source, reason)
                files = [(p, h) for kind, p, h in items if kind == "file"]
                if files:
                    result = add_files(
                        self.store, [p for p, _ in files], headers={p: h for p, h in files}
                    )
                    if result.image_ids:  # for department workers (and the scorer below)
                        enqueue_for_active_sets(self.store, result.image_ids)
                    if self.on_added is not None:
                        self.on_added(result)
                return
            except Exception as exc:  # noqa: BLE001 - a database outage must not lose objects
                if self._stopping.is_set() and delay > 8:
                    log.error(
                        "stopping with %d received object(s) not in the library (%s); they are "
                        "in the inbox: scan it to add them",
                        len(items),
                        exc,
                    )
                    return
                log.error("cannot add received objects to the library (retrying): %s", exc)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
