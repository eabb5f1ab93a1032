"""Query/retrieve of priors from a PACS: C-FIND + C-GET / C-MOVE (DIMSE) or QIDO-RS + WADO-RS.

- :func:`find_studies` - study-level query (C-FIND in the Study Root model, or QIDO-RS) by
  patient ID, study date range and modalities; one query per modality, merged by study UID, so
  every PACS answers the same way whatever it does with multi-valued keys.
- :func:`retrieve_study` - C-GET (default), WADO-RS for a ``url`` destination: the study's
  radiographs (CR, DX for presentation and processing) are written as received, atomically,
  into the inbox as ``<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``. C-GET
  offers one presentation context per transfer syntax the input layer decodes, so the PACS
  sends each object as it stored it (no transcoding); objects of other SOP classes (a report,
  an earlier result of this app) are not accepted and counted as skipped.
- :func:`move_study` - C-MOVE to this node's AE title: the PACS pushes the study to
  whatever listens under that title (``cxrlt listen``), which files it into the inbox.
- :func:`add_to_library` - the retrieved study folders scanned into the library.

Every UID that arrives from the network is checked before it becomes part of a path; every
problem is one line in :attr:`RetrieveResult.problems`, and one bad object never stops the rest.
Only the configured peer is contacted (for DICOMweb, no proxy or netrc from the environment).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrlt_desktop.dicomnode.destinations import Destination

# Storage SOP classes of projection radiography that a retrieval accepts.
RADIOGRAPH_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "CR",  # Computed Radiography Image Storage
    "1.2.840.10008.5.1.4.1.1.1.1": "DX",  # Digital X-Ray Image Storage - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1": "DX",  # Digital X-Ray Image Storage - For Processing
}
# Transfer syntaxes the input layer decodes (engine.imageio.plugins), offered one per context.
TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.51",  # JPEG extended
    "1.2.840.10008.1.2.4.57",  # JPEG lossless
    "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
)
TIMEOUT_S = 30.0  # association, DIMSE and network timeouts; HTTP requests
MAX_PDU = 1 << 20  # the largest PDU this node receives

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_DATE = re.compile(r"(\d{8})?(-(\d{8})?)?")
_MODALITY = re.compile(r"[A-Z0-9_ ]{1,16}")

# Study-level keys asked for (DICOM keywords) and their tags, for DIMSE and QIDO alike.
STUDY_KEYS = {
    "StudyInstanceUID": "0020000D",
    "PatientID": "00100020",
    "PatientName": "00100010",
    "StudyDate": "00080020",
    "StudyTime": "00080030",
    "AccessionNumber": "00080050",
    "StudyDescription": "00081030",
    "ModalitiesInStudy": "00080061",
    "NumberOfStudyRelatedInstances": "00201208",
}


class QRError(Exception):
    """A query or retrieval that could not run (no association, refused, HTTP error); one line."""


@dataclass
class StudyMatch:
    """One study a PACS reported."""

    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    study_time: str = ""
    accession: str = ""
    description: str = ""
    modalities: list[str] = field(default_factory=list)
    n_instances: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The match keyed by DICOM keyword (what ``cxrlt pacs find --json`` prints)."""
        return {
            "StudyInstanceUID": self.study_uid,
            "PatientID": self.patient_id,
            "PatientName": self.patient_name,
            "StudyDate": self.study_date,
            "StudyTime": self.study_time,
            "AccessionNumber": self.accession,
            "StudyDescription": self.description,
            "ModalitiesInStudy": list(self.modalities),
            "NumberOfStudyRelatedInstances": self.n_instances,
        }


@dataclass
class RetrieveProgress:
    """Objects of one study handled so far (``total`` None while the PACS has not said)."""

    study_uid: str
    done: int
    total: int | None


@dataclass
class RetrieveResult:
    """What a retrieval brought: files written, already there, skipped, failed."""

    study_uid: str
    files: list[Path] = field(default_factory=list)  # written now or already in the inbox
    n_new: int = 0
    n_present: int = 0  # the same SOP instance was in the inbox already
    n_skipped: int = 0  # not a radiograph (not accepted)
    n_failed: int = 0
    problems: list[str] = field(default_factory=list)
    cancelled: bool = False
    moved: int = 0  # C-MOVE: sub-operations the PACS completed (the files went to the listener)


# -- validation ---------------------------------------------------------------------------------


def is_uid(value: Any) -> bool:
    """A DICOM UID: digits and dots, 1-64 characters, no empty component."""
    return isinstance(value, str) and len(value) <= 64 and _UID.fullmatch(value) is not None


def check_uid(value: Any, what: str = "UID") -> str:
    """``value`` if it is a valid UID, else :class:`QRError` naming it."""
    if not is_uid(value):
        raise QRError(f"not a valid {what}: {str(value)[:80]!r}")
    return value


def check_patient_id(value: str) -> str:
    """A patient ID to query by: 1-64 printable characters, no backslash (a VM separator)."""
    if not value or len(value) > 64 or any(c == "\\" or ord(c) < 32 for c in value):
        raise QRError(f"not a usable patient ID: {value[:80]!r}")
    return value


def check_date_range(value: str) -> str:
    """``YYYYMMDD``, ``YYYYMMDD-YYYYMMDD``, ``-YYYYMMDD`` or ``YYYYMMDD-`` (DICOM range
    matching)."""
    m = _DATE.fullmatch(value or "")
    if not value or value == "-" or m is None:
        raise QRError(
            f"not a study date or range: {value!r} (YYYYMMDD, YYYYMMDD-YYYYMMDD, -YYYYMMDD, "
            "YYYYMMDD-)"
        )
    return value


def check_modalities(values: Iterable[str]) -> list[str]:
    """Modality codes (``CR``, ``DX``...), upper-cased, duplicates removed."""
    out: list[str] = []
    for v in values:
        code = v.strip().upper()
        if not _MODALITY.fullmatch(code):
            raise QRError(f"not a modality code: {v!r}")
        if code not in out:
            out.append(code)
    return out


# -- query --------------------------------------------------------------------------------------


def find_studies(
    dest: Destination,
    calling_aet: str,
    *,
    patient_id: str | None = None,
    study_date: str | None = None,
    modalities: Sequence[str] = (),
) -> tuple[list[StudyMatch], list[str]]:
    """Study-level query. Returns the matches (by date, newest first) and problem lines
    (answers that were skipped: a missing or invalid StudyInstanceUID).

    Raises
    ------
    QRError
        The PACS could not be reached or refused the query.
    """
    if patient_id is not None:
        check_patient_id(patient_id)
    if study_date is not None:
        check_date_range(study_date)
    mods = check_modalities(modalities) or [None]
    found: dict[str, StudyMatch] = {}
    problems: list[str] = []
    for modality in mods:
        keys = {"PatientID": patient_id, "StudyDate": study_date, "ModalitiesInStudy": modality}
        rows = _qido_studies(dest, keys) if dest.is_web else _cfind_studies(dest, calling_aet, keys)
        for row in rows:
            uid = row.get("StudyInstanceUID", "")
            if not is_uid(uid):
                problems.append(
                    f"{dest.name}: an answer without a valid StudyInstanceUID "
                    f"({str(uid)[:80]!r}) was skipped"
                )
                continue
            if (
                modality
                and row.get("ModalitiesInStudy")
                and modality not in row["ModalitiesInStudy"]
            ):
                continue  # a PACS that ignored the key
            found.setdefault(uid, _match(row))
    matches = sorted(found.values(), key=lambda m: (m.study_date, m.study_time), reverse=True)
    return matches, problems


def _match(row: dict[str, Any]) -> StudyMatch:
    n = row.get("NumberOfStudyRelatedInstances")
    try:
        n_instances = int(n) if n not in (None, "") else None
    except (TypeError, ValueError):
        n_instances = None
    return StudyMatch(
        study_uid=row["StudyInstanceUID"],
        patient_id=str(row.get("PatientID") or ""),
        patient_name=str(row.get("PatientName") or ""),
        study_date=str(row.get("StudyDate") or ""),
        study_time=str(row.get("StudyTime") or ""),
        accession=str(row.get("AccessionNumber") or ""),
        description=str(row.get("StudyDescription") or ""),
        modalities=[str(m) for m in row.get("ModalitiesInStudy") or []],
        n_instances=n_instances,
    )


def _ae(calling_aet: str) -> Any:
    from pynetdicom import AE

    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = TIMEOUT_S
    ae.dimse_timeout = TIMEOUT_S
    ae.network_timeout = TIMEOUT_S
    ae.maximum_pdu_size = MAX_PDU
    return ae


def _associate(ae: Any, dest: Destination, **kwargs: Any) -> Any:
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.aet, **kwargs)
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
        raise QRError(
            f"{dest.describe()}: association {why} (is the PACS running, and does it "
            f"know this node's AE title {ae.ae_title!r}?)"
        )
    return assoc


def _cfind_studies(
    dest: Destination, calling_aet: str, keys: dict[str, str | None]
) -> list[dict[str, Any]]:
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    for kw in STUDY_KEYS:
        setattr(query, kw, keys.get(kw) or "")
    ae = _ae(calling_aet)
    ae.add_requested_context(FIND)
    assoc = _associate(ae, dest)
    rows: list[dict[str, Any]] = []
    try:
        for status, identifier in assoc.send_c_find(query, FIND):
            if status is None:
                raise QRError(f"{dest.describe()}: C-FIND got no answer (timeout or abort)")
            code = int(status.Status)
            if code in (0xFF00, 0xFF01):
                if identifier is not None:
                    rows.append(_row_from_dataset(identifier))
            elif code != 0x0000:
                raise QRError(f"{dest.describe()}: C-FIND failed with status 0x{code:04X}")
    finally:
        assoc.release()
    return rows


def _row_from_dataset(ds: Any) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for kw in STUDY_KEYS:
        try:
            value = ds.get(kw)
        except Exception:  # noqa: BLE001 - a malformed element is left out, not fatal
            continue
        if value is None:
            continue
        if kw == "ModalitiesInStudy":
            values = [value] if isinstance(value, str) else list(value)
            row[kw] = [str(v).strip() for v in values if str(v).strip()]
        else:
            row[kw] = str(value).strip()
    return row


def _web_client(dest: Destination) -> Any:
    import requests
    from dicomweb_client import DICOMwebClient

    session = requests.Session()
    session.trust_env = False  # no proxy or netrc from the environment: only the peer
    return DICOMwebClient(dest.url, session=session, timeout=TIMEOUT_S)


def _web_call(dest: Destination, what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - requests/HTTP errors become one line
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise QRError(f"{dest.describe()}: {what} failed: {text}") from exc


def _qido_studies(dest: Destination, keys: dict[str, str | None]) -> list[dict[str, Any]]:
    filters = {k: v for k, v in keys.items() if v}
    client = _web_client(dest)
    answers = _web_call(
        dest,
        "QIDO-RS study search",
        lambda: client.search_for_studies(
            search_filters=filters, fields=list(STUDY_KEYS), get_remaining=False
        ),
    )
    return [_row_from_json(a) for a in answers or []]


def _json_value(element: dict[str, Any] | None) -> list[Any]:
    if not isinstance(element, dict):
        return []
    values = element.get("Value") or []
    out = []
    for v in values:
        if isinstance(v, dict):  # a person name
            v = v.get("Alphabetic", "")
        out.append(v)
    return out


def _row_from_json(answer: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for kw, tag in STUDY_KEYS.items():
        values = _json_value(answer.get(tag))
        if kw == "ModalitiesInStudy":
            row[kw] = [str(v) for v in values if v]
        elif values:
            row[kw] = str(values[0]).strip()
    return row


# -- retrieve -----------------------------------------------------------------------------------


def study_folder(inbox: Path, study_uid: str) -> Path:
    """The inbox folder of a study (the UID checked first)."""
    return Path(inbox) / check_uid(study_uid, "StudyInstanceUID")


def instance_path(inbox: Path, study_uid: str, series_uid: str, sop_uid: str) -> Path:
    """``inbox/<study>/<series>/<sop>.dcm``, each UID checked before it becomes a path part."""
    return (
        Path(inbox)
        / check_uid(study_uid, "StudyInstanceUID")
        / check_uid(series_uid, "SeriesInstanceUID")
        / (check_uid(sop_uid, "SOPInstanceUID") + ".dcm")
    )


def write_instance(path: Path, data: bytes | Callable[[Any], Any]) -> bool:
    """Write ``path`` atomically, never over an existing file (the same SOP instance received
    twice is one file). Returns False when it was there already."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if another writer got there first: never overwrite
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _accept(result: RetrieveResult, inbox: Path, ds: Any, write: Callable[[Path], bool]) -> int:
    """File one received object; returns the DIMSE status for a C-STORE sub-operation."""
    sop = str(ds.get("SOPInstanceUID", ""))
    try:
        if str(ds.get("StudyInstanceUID", "")) != result.study_uid:
            raise QRError(
                f"object {sop[:64]!r} belongs to study {str(ds.get('StudyInstanceUID'))[:64]!r}, "
                f"not the one asked for"
            )
        if str(ds.get("SOPClassUID", "")) not in RADIOGRAPH_SOP_CLASSES:
            result.n_skipped += 1
            return 0xA900  # dataset does not match SOP class: not one we accept
        path = instance_path(inbox, result.study_uid, str(ds.get("SeriesInstanceUID", "")), sop)
        if write(path):
            result.n_new += 1
        else:
            result.n_present += 1
        result.files.append(path)
        return 0x0000
    except (QRError, OSError, ValueError) as exc:
        result.n_failed += 1
        result.problems.append(f"{result.study_uid}: {' '.join(str(exc).split())[:300]}")
        return 0xA700 if isinstance(exc, OSError) else 0xC000


def retrieve_study(
    dest: Destination,
    calling_aet: str,
    study_uid: str,
    inbox: Path,
    *,
    progress: Callable[[RetrieveProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RetrieveResult:
    """C-GET (DIMSE) or WADO-RS (DICOMweb) of one study's radiographs into ``inbox``.

    Raises
    ------
    QRError
        The PACS could not be reached or refused the retrieval (files written before that stay).
    """
    check_uid(study_uid, "StudyInstanceUID")
    result = RetrieveResult(study_uid)
    if dest.is_web:
        _wado_study(dest, result, Path(inbox), progress, should_stop)
    else:
        _cget_study(dest, calling_aet, result, Path(inbox), progress, should_stop)
    return result


def _cget_study(
    dest: Destination,
    calling_aet: str,
    result: RetrieveResult,
    inbox: Path,
    progress: Callable[[RetrieveProgress], None] | None,
    should_stop: Callable[[], bool] | None,
) -> None:
    from pydicom.dataset import Dataset
    from pynetdicom import build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET

    ae = _ae(calling_aet)
    ae.add_requested_context(GET)
    roles = []
    for sop_class in RADIOGRAPH_SOP_CLASSES:
        for ts in TRANSFER_SYNTAXES:
            ae.add_requested_context(sop_class, [ts])
        roles.append(build_role(sop_class, scp_role=True))

    def on_store(event: Any) -> int:
        if should_stop is not None and should_stop():
            return 0xA700  # refuse the rest; the loop below aborts
        ds = event.dataset
        ds.file_meta = event.file_meta
        return _accept(result, inbox, ds, lambda p: write_instance(p, event.encoded_dataset()))

    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = result.study_uid
    assoc = _associate(ae, dest, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        for status, _identifier in assoc.send_c_get(query, GET):
            if should_stop is not None and should_stop():
                result.cancelled = True
                assoc.abort()
                return
            if status is None:
                raise QRError(f"{dest.describe()}: C-GET got no answer (timeout or abort)")
            code = int(status.Status)
            remaining = status.get("NumberOfRemainingSuboperations")
            done = result.n_new + result.n_present + result.n_skipped + result.n_failed
            if progress is not None:
                progress(RetrieveProgress(result.study_uid, done, done + int(remaining or 0)))
            if code in (0xFF00, 0xFF01):
                continue
            failed = int(status.get("NumberOfFailedSuboperations") or 0)
            if code in (0x0000, 0xB000):
                missed = failed - result.n_skipped - result.n_failed
                if missed > 0:
                    result.n_failed += missed
                    result.problems.append(
                        f"{result.study_uid}: {missed} object(s) the PACS could not send"
                    )
            else:
                raise QRError(
                    f"{dest.describe()}: C-GET of study {result.study_uid} failed with status "
                    f"0x{code:04X}"
                )
    finally:
        if assoc.is_established:
            assoc.release()


def _wado_study(
    dest: Destination,
    result: RetrieveResult,
    inbox: Path,
    progress: Callable[[RetrieveProgress], None] | None,
    should_stop: Callable[[], bool] | None,
) -> None:
    client = _web_client(dest)
    answers = _web_call(
        dest,
        "QIDO-RS instance search",
        lambda: client.search_for_instances(
            study_instance_uid=result.study_uid,
            fields=["SOPClassUID", "SeriesInstanceUID", "SOPInstanceUID"],
            get_remaining=False,
        ),
    )
    instances = []
    for a in answers or []:
        cls = (_json_value(a.get("00080016")) or [""])[0]
        series = (_json_value(a.get("0020000E")) or [""])[0]
        sop = (_json_value(a.get("00080018")) or [""])[0]
        if cls not in RADIOGRAPH_SOP_CLASSES:
            result.n_skipped += 1
            continue
        if not (is_uid(series) and is_uid(sop)):
            result.n_failed += 1
            result.problems.append(
                f"{result.study_uid}: an instance with an invalid series or SOP instance UID "
                f"({str(series)[:64]!r}, {str(sop)[:64]!r}) was skipped"
            )
            continue
        instances.append((series, sop))
    total = len(instances)
    for k, (series, sop) in enumerate(instances):
        if should_stop is not None and should_stop():
            result.cancelled = True
            return
        path = instance_path(inbox, result.study_uid, series, sop)
        if path.exists():
            result.n_present += 1
            result.files.append(path)
        else:
            # "*": the object as the PACS stored it, not transcoded.
            ds = _web_call(
                dest,
                f"WADO-RS retrieval of {sop}",
                lambda series=series, sop=sop: client.retrieve_instance(
                    result.study_uid, series, sop, media_types=(("application/dicom", "*"),)
                ),
            )
            if str(ds.get("SOPInstanceUID", "")) != sop:
                result.n_failed += 1
                result.problems.append(f"{result.study_uid}: WADO-RS sent another object for {sop}")
            else:
                _accept(
                    result,
                    inbox,
                    ds,
                    lambda p, ds=ds: write_instance(
                        p, lambda f: ds.save_as(f, enforce_file_format=True)
                    ),
                )
        if progress is not None:
            progress(RetrieveProgress(result.study_uid, k + 1, total))


def move_study(
    dest: Destination,
    calling_aet: str,
    study_uid: str,
    *,
    move_destination: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RetrieveResult:
    """C-MOVE of one study to ``move_destination`` (default: ``calling_aet``, this node). The
    PACS opens its own association to that AE title, so ``cxrlt listen`` must be running and
    known to the PACS; the files go into the listener's inbox and library.

    Raises
    ------
    QRError
        DICOMweb destination, or the PACS could not be reached or refused the move.
    """
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE

    if dest.is_web:
        raise QRError(f"{dest.describe()}: C-MOVE needs a DIMSE destination (aet, host, port)")
    result = RetrieveResult(check_uid(study_uid, "StudyInstanceUID"))
    ae = _ae(calling_aet)
    ae.add_requested_context(MOVE)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    assoc = _associate(ae, dest)
    try:
        for status, _identifier in assoc.send_c_move(query, move_destination or calling_aet, MOVE):
            if should_stop is not None and should_stop():
                result.cancelled = True
                assoc.abort()
                return result
            if status is None:
                raise QRError(f"{dest.describe()}: C-MOVE got no answer (timeout or abort)")
            code = int(status.Status)
            if code in (0xFF00, 0xFF01):
                continue
            result.moved = int(status.get("NumberOfCompletedSuboperations") or 0)
            result.n_failed = int(status.get("NumberOfFailedSuboperations") or 0)
            if code == 0xA801:
                raise QRError(
                    f"{dest.describe()}: the PACS does not know the move destination "
                    f"{move_destination or calling_aet!r} (status 0xA801)"
                )
            if code not in (0x0000, 0xB000):
                raise QRError(
                    f"{dest.describe()}: C-MOVE of study {study_uid} failed with status "
                    f"0x{code:04X} (is `cxrlt listen` running as {move_destination or calling_aet!r}?)"
                )
            if result.n_failed:
                result.problems.append(
                    f"{study_uid}: {result.n_failed} object(s) the PACS could not move"
                )
    finally:
        if assoc.is_established:
            assoc.release()
    return result


def add_to_library(store: Any, inbox: Path, study_uids: Iterable[str]) -> list[str]:
    """Scan the retrieved studies' inbox folders into the library; returns the problem lines
    of the scan (files the library refused, with the reason)."""
    from cxrlt_desktop.library.scanning import scan

    folders = [study_folder(inbox, u) for u in study_uids]
    folders = [f for f in folders if f.is_dir()]
    if not folders:
        return []
    for _ in scan(store, folders):
        pass
    return _refused(store, folders)


def _refused(store: Any, folders: list[Path]) -> list[str]:
    from sqlalchemy import select

    from cxrlt_desktop.store.models import Image

    out: list[str] = []
    with store.session() as s, s.begin():
        for folder in folders:
            prefix = str(folder.resolve()) + os.sep
            for path, reason in s.execute(
                select(Image.path, Image.reason).where(
                    Image.usable.is_(False), Image.path.startswith(prefix, autoescape=True)
                )
            ):
                out.append(f"{path}: {reason}")
    return out
