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

import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrlt_desktop.dicomnode.destinations import Destination
from cxrlt_desktop.dicomnode.inbox import Inbox, valid_uid

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
    headers: dict[str, Any] = field(default_factory=dict)  # path -> the input layer's header
    n_new: int = 0
    n_present: int = 0  # the same SOP instance was in the inbox already
    n_skipped: int = 0  # not a radiograph (not accepted)
    n_failed: int = 0
    problems: list[str] = field(default_factory=list)
    cancelled: bool = False
    moved: int = 0  # C-MOVE: sub-operations the PACS completed (the files went to the listener)


# -- validation ---------------------------------------------------------------------------------


def is_uid(value: Any) -> bool:
    """A DICOM UID (the UI value representation: :func:`cxrlt_desktop.dicomnode.inbox.valid_uid`)."""
    return valid_uid(value)


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


def _accept(result: RetrieveResult, inbox: Any, sop_class: str, data: bytes) -> int:
    """File one received object (Part 10 bytes) through the inbox: staged, read by the input
    layer, its UIDs checked, then moved into place. Returns the DIMSE status of a C-STORE
    sub-operation."""
    from dataclasses import replace

    from cxrlt_desktop.dicomnode.inbox import NoSpace
    from engine.imageio import read_header

    if sop_class not in RADIOGRAPH_SOP_CLASSES:
        result.n_skipped += 1
        return 0xA900  # not one of the SOP classes this retrieval accepts
    try:
        staged = inbox.stage(data)
    except NoSpace as exc:
        result.n_failed += 1
        result.problems.append(f"{result.study_uid}: out of resources: {exc}")
        return 0xA700
    except OSError as exc:
        result.n_failed += 1
        result.problems.append(f"{result.study_uid}: cannot write to the inbox: {exc}")
        return 0xA700
    try:
        head = read_header(staged.path)
        meta = head.meta or {}
        sop = meta.get("SOPInstanceUID")
        if meta.get("StudyInstanceUID") != result.study_uid:
            raise ValueError(
                f"object {str(sop)[:64]!r} belongs to study "
                f"{str(meta.get('StudyInstanceUID'))[:64]!r}, not the one asked for"
            )
        target = inbox.path_for(result.study_uid, meta.get("SeriesInstanceUID"), sop)
        outcome = inbox.commit(staged, target)
    except (ValueError, OSError) as exc:
        inbox.discard(staged)
        result.n_failed += 1
        reason = head.reason if not head.ok and head.reason else str(exc)
        result.problems.append(f"{result.study_uid}: {' '.join(str(reason).split())[:300]}")
        return 0xA900 if isinstance(exc, ValueError) else 0xA700
    if outcome.value == "unchanged":
        result.n_present += 1
    else:
        result.n_new += 1
    result.files.append(target)
    result.headers[str(target)] = replace(head, path=target)
    return 0x0000


def retrieve_study(
    dest: Destination,
    calling_aet: str,
    study_uid: str,
    inbox: Inbox,
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
        _wado_study(dest, result, inbox, progress, should_stop)
    else:
        _cget_study(dest, calling_aet, result, inbox, progress, should_stop)
    return result


def _cget_study(
    dest: Destination,
    calling_aet: str,
    result: RetrieveResult,
    inbox: Inbox,
    progress: Callable[[RetrieveProgress], None] | None,
    should_stop: Callable[[], bool] | None,
) -> None:
    """An image-level C-FIND lists the study's instances and SOP classes; the radiographs are
    then fetched series by series with an image-level C-GET (a list of SOP instance UIDs), so
    objects of other classes are skipped, not failed."""
    from pynetdicom import build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET

    ae = _ae(calling_aet)
    ae.add_requested_context(FIND)
    ae.add_requested_context(GET)
    roles = []
    for sop_class in RADIOGRAPH_SOP_CLASSES:
        for ts in TRANSFER_SYNTAXES:
            ae.add_requested_context(sop_class, [ts])
        roles.append(build_role(sop_class, scp_role=True))
    refused = [0]  # sub-operations this node answered with a failure

    def on_store(event: Any) -> int:
        if should_stop is not None and should_stop():
            refused[0] += 1
            return 0xA700  # refuse the rest; the loop below aborts
        before = result.n_failed + result.n_skipped
        status = _accept(
            result,
            inbox,
            str(event.request.AffectedSOPClassUID),
            event.encoded_dataset(include_meta=True),
        )
        refused[0] += result.n_failed + result.n_skipped - before
        return status

    assoc = _associate(ae, dest, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        by_series = _radiographs_by_series(dest, assoc, FIND, result)
        total = sum(len(v) for v in by_series.values())
        base = result.n_skipped + result.n_failed
        for series, sops in by_series.items():
            refused[0] = 0
            for status, _identifier in assoc.send_c_get(
                _image_query(result.study_uid, series, sops), GET
            ):
                if should_stop is not None and should_stop():
                    result.cancelled = True
                    assoc.abort()
                    return
                if status is None:
                    raise QRError(f"{dest.describe()}: C-GET got no answer (timeout or abort)")
                code = int(status.Status)
                if progress is not None:
                    done = result.n_new + result.n_present + result.n_skipped + result.n_failed
                    progress(RetrieveProgress(result.study_uid, done - base, total))
                if code in (0xFF00, 0xFF01):
                    continue
                completed = int(status.get("NumberOfCompletedSuboperations") or 0)
                failed = int(status.get("NumberOfFailedSuboperations") or 0)
                if code not in (0x0000, 0xB000) and completed == 0 and failed == 0:
                    raise QRError(
                        f"{dest.describe()}: C-GET of study {result.study_uid} failed with "
                        f"status 0x{code:04X}"
                    )
                missed = failed - refused[0]
                if missed > 0:  # failures on the PACS's side, not refusals of this node
                    result.n_failed += missed
                    result.problems.append(
                        f"{result.study_uid}: {missed} object(s) of series {series} the PACS "
                        f"could not send (status 0x{code:04X})"
                    )
    finally:
        if assoc.is_established:
            assoc.release()


def _radiographs_by_series(
    dest: Destination, assoc: Any, find: Any, result: RetrieveResult
) -> dict[str, list[str]]:
    """series UID -> SOP instance UIDs of the study's radiographs (an image-level C-FIND); the
    other instances are counted as skipped."""
    by_series: dict[str, list[str]] = {}
    found = _cfind_instances(dest, assoc, find, result.study_uid)
    if not found:
        raise QRError(f"{dest.describe()}: no study {result.study_uid} on the PACS")
    for series, sop, sop_class in found:
        if sop_class and sop_class not in RADIOGRAPH_SOP_CLASSES:
            result.n_skipped += 1
        elif not (is_uid(series) and is_uid(sop)):
            result.n_failed += 1
            result.problems.append(
                f"{result.study_uid}: an instance with an invalid series or SOP instance "
                f"UID ({str(series)[:64]!r}, {str(sop)[:64]!r}) was skipped"
            )
        else:
            by_series.setdefault(series, []).append(sop)
    return by_series


def _image_query(study_uid: str, series: str, sops: list[str]) -> Any:
    """An image-level identifier: these SOP instances of one series (UID list matching)."""
    from pydicom.dataset import Dataset

    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = series
    query.SOPInstanceUID = sops if len(sops) > 1 else sops[0]
    return query


def _cfind_instances(
    dest: Destination, assoc: Any, find: Any, study_uid: str
) -> list[tuple[str, str, str]]:
    """(series UID, SOP instance UID, SOP class UID) of every instance of the study."""
    from pydicom.dataset import Dataset

    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = ""
    query.SOPInstanceUID = ""
    query.SOPClassUID = ""
    out = []
    for status, identifier in assoc.send_c_find(query, find):
        if status is None:
            raise QRError(f"{dest.describe()}: C-FIND got no answer (timeout or abort)")
        code = int(status.Status)
        if code in (0xFF00, 0xFF01):
            if identifier is not None:
                out.append(
                    tuple(
                        str(identifier.get(k, "") or "").strip()
                        for k in ("SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
                    )
                )
        elif code != 0x0000:
            raise QRError(
                f"{dest.describe()}: C-FIND of the instances of study {study_uid} failed with "
                f"status 0x{code:04X}"
            )
    return out


def _wado_study(
    dest: Destination,
    result: RetrieveResult,
    inbox: Inbox,
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
    if not answers:
        raise QRError(f"{dest.describe()}: no study {result.study_uid} on the PACS")
    total = len(instances)
    for k, (series, sop) in enumerate(instances):
        if should_stop is not None and should_stop():
            result.cancelled = True
            return
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
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            _accept(result, inbox, str(ds.get("SOPClassUID", "")), buf.getvalue())
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
    """C-MOVE of one study's radiographs to ``move_destination`` (default: ``calling_aet``,
    this node), series by series at image level as :func:`retrieve_study` does. The PACS opens
    its own association to that AE title, so ``cxrlt listen`` must be running and known to the
    PACS; the files go into the listener's inbox and library.

    Raises
    ------
    QRError
        DICOMweb destination, or the PACS could not be reached or refused the move.
    """
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE

    if dest.is_web:
        raise QRError(f"{dest.describe()}: C-MOVE needs a DIMSE destination (aet, host, port)")
    result = RetrieveResult(check_uid(study_uid, "StudyInstanceUID"))
    target = move_destination or calling_aet
    ae = _ae(calling_aet)
    ae.add_requested_context(FIND)
    ae.add_requested_context(MOVE)
    assoc = _associate(ae, dest)
    try:
        for series, sops in _radiographs_by_series(dest, assoc, FIND, result).items():
            for status, _identifier in assoc.send_c_move(
                _image_query(study_uid, series, sops), target, MOVE
            ):
                if should_stop is not None and should_stop():
                    result.cancelled = True
                    assoc.abort()
                    return result
                if status is None:
                    raise QRError(f"{dest.describe()}: C-MOVE got no answer (timeout or abort)")
                code = int(status.Status)
                if code in (0xFF00, 0xFF01):
                    continue
                if code == 0xA801:
                    raise QRError(
                        f"{dest.describe()}: the PACS does not know the move destination "
                        f"{target!r} (status 0xA801)"
                    )
                completed = int(status.get("NumberOfCompletedSuboperations") or 0)
                failed = int(status.get("NumberOfFailedSuboperations") or 0)
                if code in (0x0000, 0xB000) or completed or failed:
                    result.moved += completed
                    if code not in (0x0000, 0xB000) and not failed:
                        failed = len(sops) - completed
                    result.n_failed += failed
                    if failed:
                        result.problems.append(
                            f"{study_uid}: {failed} object(s) of series {series} the PACS could "
                            f"not move (status 0x{code:04X})"
                        )
                    continue
                raise QRError(
                    f"{dest.describe()}: C-MOVE of study {study_uid} failed with status "
                    f"0x{code:04X} (is `cxrlt listen` running as {target!r}, and known to the "
                    "PACS?)"
                )
    finally:
        if assoc.is_established:
            assoc.release()
    return result


def add_to_library(store: Any, results: Iterable[RetrieveResult]) -> tuple[list[int], list[str]]:
    """Add the retrieved files to the library (``library.scanning.add_files``: only these files,
    no walk) and queue the new images for scoring by every active model set. Returns the ids of
    the images to score and the problem lines of files the library found unusable."""
    from cxrlt_desktop.library.queue import enqueue_for_active_sets
    from cxrlt_desktop.library.scanning import add_files

    files: list[Path] = []
    headers: dict[str, Any] = {}
    for r in results:
        files.extend(r.files)
        headers.update(r.headers)
    if not files:
        return [], []
    added = add_files(store, files, headers=headers)
    if added.image_ids:
        enqueue_for_active_sets(store, added.image_ids)
    problems = [f"{path}: {reason}" for path, reason in added.progress.problems]
    return list(added.image_ids), problems
