"""The two SR documents of an image, built from a real store (SQLite and PostgreSQL): the
AI-result SR (UNVERIFIED, the model set as device, each model in Contributing Equipment) and
the review SR (the radiologists' verdicts, VERIFIED, referencing the AI-result SR).

Everything is read back with plain pydicom (not highdicom) and checked by dciodvfy
(dicom3tools); the codes are checked against pydicom's concept dictionary and against the
values the issue names, not against the mapping table alone.
"""

from __future__ import annotations

import csv
import io
import random
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pydicom
import pytest
from dciodvfy import verify

from cxrlt_desktop.export import build_ai_sr, build_review_sr, finding_codes, sr_bytes
from cxrlt_desktop.export.records import read_image
from cxrlt_desktop.library.reviews import set_verdict
from engine.classes import ALL_CLASSES

from .conftest import insert_prediction, probs_with

SALT = b"s" * 32
PRESENT, ABSENT, UNCERTAIN = "52101004", "272519000", "64957009"
MODEL = {"sha256": "ab" * 32, "role": "task1-csra", "arch": "convnextv2_atto", "weight": 1.5}


@pytest.fixture
def store(any_store):
    return any_store


@pytest.fixture
def scored(store, library):
    """Image 0 scored (known probabilities) and reviewed by two readers; image 1 scored only."""
    ids = [library.image_ids[p] for p in library.paths]
    probs = probs_with({"Pneumothorax": 0.9, "Mass": 0.1, "pneumoperitoneo": 0.7}, default=0.2)
    insert_prediction(store, ids[0], probs, models=[MODEL])
    insert_prediction(store, ids[1], probs, models=[MODEL])
    set_verdict(store, ids[0], "Pneumothorax", "absent", reviewer="Dr Early Reader")
    set_verdict(store, ids[0], "Mass", "uncertain", reviewer="Dr Early Reader")
    set_verdict(store, ids[0], "pneumoperitoneo", "present", reviewer="Dr Late Reader")
    return ids


def _read(ds) -> pydicom.Dataset:
    """The document as a file would give it back."""
    return pydicom.dcmread(io.BytesIO(sr_bytes(ds)))


def _groups(ds) -> dict[str, dict]:
    """Tracking identifier -> the group's finding, evaluations, probability, tracking UID and
    algorithm text items, walked with plain pydicom."""
    imaging = next(
        i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010"
    )
    out = {}
    for group in imaging.ContentSequence:
        info: dict = {"evaluations": {}, "algorithm": []}
        name = None
        for item in group.ContentSequence:
            concept = item.ConceptNameCodeSequence[0]
            key = (concept.CodingSchemeDesignator, concept.CodeValue)
            if key == ("DCM", "112039"):
                name = item.TextValue
            elif key == ("DCM", "112040"):
                info["tracking_uid"] = item.UID
            elif key == ("DCM", "121071"):  # Finding
                c = item.ConceptCodeSequence[0]
                info["finding"] = (c.CodingSchemeDesignator, c.CodeValue, c.CodeMeaning)
            elif item.ValueType == "CODE":
                c = item.ConceptCodeSequence[0]
                info["evaluations"][(concept.CodingSchemeDesignator, concept.CodeValue)] = (
                    c.CodeValue
                )
            elif item.ValueType == "NUM":
                info["probability_concept"] = key
                info["probability"] = float(item.MeasuredValueSequence[0].NumericValue)
            elif key in (("DCM", "111001"), ("DCM", "111003"), ("DCM", "111002")):
                info["algorithm"].append(item.TextValue)  # TID 4019 name, version, parameters
            elif item.ValueType == "IMAGE":
                info["image"] = item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        out[name] = info
    return out


def _observers(ds) -> list[tuple[str, str]]:
    """(observer type code, name or device UID) of the root observation context."""
    out, kind = [], None
    for item in ds.ContentSequence:
        c = item.ConceptNameCodeSequence[0].CodeValue
        if c == "121005":  # Observer Type
            kind = item.ConceptCodeSequence[0].CodeValue
        elif c == "121008":  # Person Observer Name
            out.append((kind, str(item.PersonName)))
        elif c == "121012":  # Device Observer UID
            out.append((kind, item.UID))
    return out


# ----------------------------------------------------------------------------------------------
# dciodvfy


@pytest.mark.parametrize("include_phi", [False, True], ids=["deidentified", "identified"])
def test_both_documents_pass_dciodvfy(store, scored, tmp_path, include_phi):
    ai = build_ai_sr(store, scored[0], include_phi=include_phi, salt=SALT)
    review = build_review_sr(store, scored[0], ai, include_phi=include_phi, salt=SALT)
    for name, doc in (("ai", ai), ("review", review)):
        result = verify(sr_bytes(doc), tmp_path)
        assert result.iod == "ComprehensiveSR", result.output
        assert result.errors == [], f"{name}: {result.output}"
        # Allowed warnings only: the private scheme is not one dciodvfy knows, and the
        # de-identified study has no Study ID and time (DICOMDIR hints).
        unexpected = [
            w
            for w in result.warnings
            if "Unrecognized defined term <99CXRLT>" not in w
            and "needed to build DICOMDIR - Study Time" not in w
            and "needed to build DICOMDIR - Study ID" not in w
        ]
        assert unexpected == [], f"{name}: {result.output}"


def test_dciodvfy_finds_a_broken_document(store, scored, tmp_path):
    """Control: the verifier does report errors, so a clean result means something."""
    ai = build_ai_sr(store, scored[0], salt=SALT)
    del ai.ContentSequence
    del ai.VerificationFlag
    assert verify(sr_bytes(ai), tmp_path).errors


# ----------------------------------------------------------------------------------------------
# the AI-result SR


def test_ai_sr_is_unverified_and_names_each_model(store, scored):
    ds = _read(build_ai_sr(store, scored[0], salt=SALT))  # image 0 has verdicts: still
    assert ds.VerificationFlag == "UNVERIFIED" and "VerifyingObserverSequence" not in ds
    assert ds.CompletionFlag == "COMPLETE"
    assert "NOT FOR DIAGNOSTIC USE" in ds.SeriesDescription.upper()
    models = [
        item
        for item in ds.ContributingEquipmentSequence
        if item.PurposeOfReferenceCodeSequence[0].CodeValue == "1630"
    ]
    assert len(models) == 1
    item = models[0]
    purpose = item.PurposeOfReferenceCodeSequence[0]
    assert (purpose.CodingSchemeDesignator, purpose.CodeMeaning) == (
        "99IHE",
        "Processing Algorithm",
    )
    assert item.Manufacturer == "CXR-LT Desktop"
    assert (
        MODEL["role"] in item.ManufacturerModelName and MODEL["arch"] in item.ManufacturerModelName
    )
    from cxrlt_desktop import __version__

    assert list(item.SoftwareVersions) == [__version__, MODEL["sha256"]]
    # only the model set observes: a device, no person
    observers = _observers(ds)
    assert [k for k, _ in observers] == ["121007"]  # DCM Device
    # every scored finding (all 36 here) has its call at the threshold and its probability
    groups = _groups(ds)
    assert len(groups) == len(ALL_CLASSES)
    pt = groups["AI: Pneumothorax"]
    assert pt["finding"] == ("SCT", "36118008", "Pneumothorax")
    assert pt["evaluations"] == {("SCT", "36118008"): PRESENT}  # 0.9 >= 0.5
    assert pt["probability_concept"] == ("DCM", "122157")  # Probability
    assert pt["probability"] == pytest.approx(0.9, abs=1e-6)
    assert groups["AI: Mass"]["evaluations"] == {("SCT", "4147007"): ABSENT}  # 0.1 < 0.5
    assert "CXR-LT Desktop" in pt["algorithm"]


def test_ai_sr_uses_the_model_sets_thresholds(store, scored):
    from cxrlt_desktop.store.models import ModelSet
    from cxrlt_desktop.store.tables_thresholds import ModelSetThreshold

    with store.session() as s:
        set_id = s.query(ModelSet.id).filter(ModelSet.key == "set-a").scalar()
    ds = _read(build_ai_sr(store, scored[0], salt=SALT))
    assert _groups(ds)["AI: Pneumothorax"]["evaluations"] == {("SCT", "36118008"): PRESENT}

    def work(s):
        s.add(ModelSetThreshold(model_set_id=set_id, finding="Pneumothorax", threshold=0.95))

    store.write(work)
    ds = _read(build_ai_sr(store, scored[0], salt=SALT))
    group = _groups(ds)["AI: Pneumothorax"]
    assert group["evaluations"] == {("SCT", "36118008"): ABSENT}  # 0.9 < 0.95
    assert "operating threshold 0.95" in group["algorithm"]


def _model_set_key(models, settings):
    from cxrlt_desktop.library.scoring import model_set_key

    return model_set_key({"models": models, "settings": settings})


def _device_uid(store, image_id, models, settings):
    key = _model_set_key(models, settings)
    insert_prediction(store, image_id, probs_with({}), models=models, settings=settings, key=key)
    uid = next(v for k, v in _observers(_read(build_ai_sr(store, image_id, salt=SALT))))
    assert re.fullmatch(r"2\.25\.[1-9][0-9]*", uid) and len(uid) <= 64
    return uid


def test_a_changed_model_gives_a_new_device_uid(store, library):
    image = library.image_ids[library.paths[2]]
    settings = {"mode": "fast", "prompts_hash": "p1", "calibration_sha256": "c1"}
    first = _device_uid(store, image, [MODEL], settings)
    again = build_ai_sr(store, image, salt=SALT)  # the same model set: the same device
    assert next(v for _, v in _observers(_read(again))) == first
    changed = [
        ([dict(MODEL, sha256="cd" * 32)], settings),  # other weights file
        ([MODEL], dict(settings, prompts_hash="p2")),  # other prompts
        ([MODEL], dict(settings, calibration_sha256="c2")),  # other calibration
        ([dict(MODEL, weight=2.0)], settings),  # other ensemble weight
    ]
    uids = {first}
    for models, s in changed:
        uid = _device_uid(store, image, models, s)
        assert uid not in uids, (models, s)
        uids.add(uid)


# ----------------------------------------------------------------------------------------------
# the review SR


def test_review_sr_holds_the_verdicts_and_references_the_ai_sr(store, scored):
    ai = _read(build_ai_sr(store, scored[0], salt=SALT))
    review = _read(build_review_sr(store, scored[0], ai, salt=SALT))
    assert review.VerificationFlag == "VERIFIED" and review.CompletionFlag == "COMPLETE"
    assert review.SeriesInstanceUID != ai.SeriesInstanceUID
    assert review.StudyInstanceUID == ai.StudyInstanceUID
    ref = review.PertinentOtherEvidenceSequence[0]
    assert ref.StudyInstanceUID == ai.StudyInstanceUID
    series = ref.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == ai.SeriesInstanceUID
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ai.SOPInstanceUID
    assert series.ReferencedSOPSequence[0].ReferencedSOPClassUID == ai.SOPClassUID
    groups = _groups(review)
    assert {k: g["evaluations"] for k, g in groups.items()} == {
        "Review: Pneumoperitoneum": {("99CXRLT", "PNEUMOPERITONEUM"): PRESENT},
        "Review: Mass": {("SCT", "4147007"): UNCERTAIN},
        "Review: Pneumothorax": {("SCT", "36118008"): ABSENT},
    }
    assert not any("probability" in g for g in groups.values())  # no AI content in it
    # the same finding has the same Tracking UID in both documents
    ai_groups = _groups(ai)
    for name in ("Pneumoperitoneum", "Mass", "Pneumothorax"):
        assert groups[f"Review: {name}"]["tracking_uid"] == ai_groups[f"AI: {name}"]["tracking_uid"]
        assert groups[f"Review: {name}"]["image"] == ai_groups[f"AI: {name}"]["image"]
    assert len({g["tracking_uid"] for g in ai_groups.values()}) == len(ai_groups)


def test_review_sr_observers_are_pseudonyms_unless_identified(store, scored):
    from cxrlt_desktop.library.pseudonym import pseudonym

    ai = build_ai_sr(store, scored[0], salt=SALT)
    deid = _read(build_review_sr(store, scored[0], ai, salt=SALT))
    early = pseudonym("Dr Early Reader", kind="reviewer", salt=SALT)
    late = pseudonym("Dr Late Reader", kind="reviewer", salt=SALT)
    # the latest verdict's reviewer first, each a person observer and a verifying observer
    assert _observers(deid) == [("121006", f"{late}^"), ("121006", f"{early}^")]
    assert [str(v.VerifyingObserverName) for v in deid.VerifyingObserverSequence] == [
        f"{late}^",
        f"{early}^",
    ]
    assert b"Reader" not in sr_bytes(deid)
    ident = _read(build_review_sr(store, scored[0], ai, include_phi=True, salt=SALT))
    assert _observers(ident) == [("121006", "Dr Late Reader^"), ("121006", "Dr Early Reader^")]


def test_no_review_sr_without_a_verdict(store, scored):
    ai = build_ai_sr(store, scored[1], salt=SALT)
    assert ai.VerificationFlag == "UNVERIFIED"
    assert build_review_sr(store, scored[1], ai, salt=SALT) is None
    # one verdict later there is one, VERIFIED
    set_verdict(store, scored[1], "Hernia", "absent", reviewer="Dr Early Reader")
    assert build_review_sr(store, scored[1], ai, salt=SALT).VerificationFlag == "VERIFIED"


def test_an_unscored_image_has_no_ai_sr_but_a_review_sr(store, library):
    image = library.image_ids[library.paths[3]]
    set_verdict(store, image, "Mass", "present", reviewer="Dr Early Reader")
    with pytest.raises(LookupError, match="not scored"):
        build_ai_sr(store, image, salt=SALT)
    review = _read(build_review_sr(store, image, None, salt=SALT))
    assert review.VerificationFlag == "VERIFIED" and "PertinentOtherEvidenceSequence" not in review
    with pytest.raises(LookupError, match="not in the library"):
        build_ai_sr(store, 10_000, salt=SALT)


# ----------------------------------------------------------------------------------------------
# codes


def _sct_dictionary() -> dict[str, set[str]]:
    """code value -> meanings, from pydicom's public concept dictionary ``codes.SCT``."""
    from pydicom.sr.codedict import codes

    out: dict[str, set[str]] = {}
    for keyword in codes.SCT.dir():
        code = getattr(codes.SCT, keyword)
        out.setdefault(code.value, set()).add(code.meaning)
    return out


def test_codes_are_standard_where_the_table_says_so(store, scored):
    sct = _sct_dictionary()
    table = finding_codes()
    # the codes the conformance requirements name, from outside the table
    named = {
        "Pneumothorax": "36118008",
        "pleural effusion": "60046008",
        "cardiomegaly": "287272002",
        "Mass": "4147007",
        "Adenopathy": "30746006",
    }
    for key, value in named.items():
        assert (table[key].scheme, table[key].value) == ("SCT", value), key
    for row in table.values():
        assert row.meaning.isascii() and row.meaning[0].isupper(), row  # English names
        if row.scheme == "SCT":
            assert row.value in sct, row  # exists in pydicom's dictionary
            assert row.meaning in sct[row.value], (row, sct[row.value])
        else:
            assert row.scheme == "99CXRLT", row
            # no SNOMED CT concept of pydicom's dictionary carries this meaning
            assert not any(row.meaning.lower() == m.lower() for ms in sct.values() for m in ms)
    assert sum(r.scheme == "SCT" for r in table.values()) >= 7
    assert table["pneumoperitoneo"].meaning == "Pneumoperitoneum"
    # the document uses exactly the table's codes
    ds = _read(build_ai_sr(store, scored[0], salt=SALT))
    for group in _groups(ds).values():
        scheme, value, meaning = group["finding"]
        row = next(r for r in table.values() if (r.scheme, r.value) == (scheme, value))
        assert meaning == row.meaning and group["evaluations"].keys() == {(scheme, value)}
    assert "pneumoperitoneo" not in str(ds)
    # the private scheme is identified in the header
    ident = ds.CodingSchemeIdentificationSequence[0]
    assert ident.CodingSchemeDesignator == "99CXRLT"


def test_reordering_the_class_list_changes_no_code(store, scored, monkeypatch):
    """Reorder the classes (and the probabilities with them, as a retrained engine would):
    each finding keeps its code, its call and its probability."""
    import cxrlt_desktop.export.ai_sr as ai_sr
    from cxrlt_desktop.export import records

    def by_finding(ds):
        return {
            g["finding"]: (g["evaluations"], round(g["probability"], 6))
            for g in _groups(_read(ds)).values()
        }

    before = by_finding(build_ai_sr(store, scored[0], salt=SALT))
    order = list(range(len(ALL_CLASSES)))
    random.Random(7).shuffle(order)
    shuffled = tuple(ALL_CLASSES[i] for i in order)
    monkeypatch.setattr(ai_sr, "ALL_CLASSES", shuffled)
    real = records.PredictionRecord.__init__

    def permuted(self, *args, **kwargs):
        real(self, *args, **kwargs)
        self.probs = np.asarray(self.probs)[order]

    monkeypatch.setattr(records.PredictionRecord, "__init__", permuted)
    after = by_finding(build_ai_sr(store, scored[0], salt=SALT))
    assert after == before
    # and the table itself: its rows in another order give every class the same code
    from importlib import resources

    from cxrlt_desktop.export.codes import parse_table

    text = resources.files("resources").joinpath("finding_codes.csv").read_text("utf-8")
    header, *rows = text.splitlines()
    random.Random(3).shuffle(rows)
    assert parse_table("\n".join([header, *rows])) == finding_codes()
    assert list(csv.DictReader(text.splitlines()))[0]["key"] == ALL_CLASSES[0]


def test_dates_of_the_documents_follow_the_shift(store, scored):
    from cxrlt_desktop.export import date_shift_days
    from cxrlt_desktop.store.models import Review

    with store.session() as s:
        latest = max(r.reviewed_at for r in s.query(Review).filter(Review.image_id == scored[0]))
    if latest.tzinfo is None:
        latest = latest.replace(tzinfo=UTC)
    ai = build_ai_sr(store, scored[0], salt=SALT)
    review = _read(build_review_sr(store, scored[0], ai, salt=SALT))

    rec, _ = read_image(store, scored[0])
    days = date_shift_days(rec.patient_key, salt=SALT)
    assert -730 <= days <= -1
    expect = (latest.astimezone(UTC) + timedelta(days=days)).strftime("%Y%m%d")
    assert review.ContentDate == expect
    assert review.VerifyingObserverSequence[0].VerificationDateTime[:8] == expect
    assert review.StudyDate == (datetime(2023, 4, 17) + timedelta(days=days)).strftime("%Y%m%d")
    today = datetime.now(UTC).strftime("%Y%m%d")
    assert today not in sr_bytes(review).decode("latin-1")
    assert today not in sr_bytes(ai).decode("latin-1")
    ident = _read(build_review_sr(store, scored[0], ai, include_phi=True, salt=SALT))
    assert ident.ContentDate == latest.astimezone(UTC).strftime("%Y%m%d")
    assert ident.StudyDate == "20230417"


@pytest.mark.parametrize("sex", ["", "M"])
def test_patient_characteristics_declared_only_when_kept(store, tmp_path, sex):
    from engine.dicomwrite import write_dicom

    from .conftest import _pixels, scan_folder

    path = write_dicom(tmp_path / "in" / "a.dcm", _pixels(1), patient_id="PIDX1", patient_sex=sex)
    image = scan_folder(store, tmp_path / "in")[path.resolve()]
    set_verdict(store, image, "Mass", "present", reviewer="Dr Early Reader")
    insert_prediction(store, image, probs_with({}), models=[MODEL])
    ai = _read(build_ai_sr(store, image, salt=SALT))
    review = _read(build_review_sr(store, image, ai, salt=SALT))
    for ds in (ai, review):
        codes = {c.CodeValue for c in ds.DeidentificationMethodCodeSequence}
        assert ds.get("PatientSex", "") == sex
        assert ("113108" in codes) == bool(sex)  # Retain Patient Characteristics
        assert {"113100", "113104", "113107"} <= codes
