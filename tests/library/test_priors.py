"""Prior selection on both dialects: one patient's studies on several dates, another patient's
study on a closer date, a non-chest study and an undated one."""

from __future__ import annotations

import pytest

from cxrlt_desktop.library.priors import (
    choose_prior,
    format_date,
    interval_text,
    prior_image,
    prior_studies,
)


@pytest.fixture
def library(any_store, tmp_path, write_study):
    from pydicom.uid import generate_uid

    from cxrlt_desktop.library.scanning import scan

    uids = {}

    def study(name, pid, date, **kw):
        uids[name] = generate_uid()
        write_study(tmp_path / name, 1, patient_id=pid, study_uid=uids[name], study_date=date, **kw)

    study("current", "P1", "20230515", view_position="PA")
    study("prior_2019", "P1", "20190304", view_position="PA")
    study("prior_2021", "P1", "20210110", view_position="AP")
    study("later_2024", "P1", "20240101")  # after the open study: listed, never chosen
    study("other_patient", "P2", "20230101")  # closer in time, another patient
    study("knee", "P1", "20230301", body_part="KNEE")  # the patient's, not a chest
    for _ in scan(any_store, [tmp_path / name for name in uids]):
        pass
    return any_store, uids


def test_the_most_recent_earlier_chest_study_of_the_same_patient(library):
    store, uids = library
    listed = prior_studies(store, uids["current"])
    assert [c.study_uid for c in listed] == [
        uids["later_2024"],
        uids["prior_2021"],
        uids["prior_2019"],
    ]  # newest first; no other patient, no knee, not the study itself
    chosen = choose_prior(store, uids["current"])
    assert chosen is not None and chosen.study_uid == uids["prior_2021"]
    assert chosen.views == ("AP",)
    assert chosen.label().startswith("2021-01-10  AP")
    # from the 2021 study, the 2019 one; from the 2019 study, none earlier
    assert choose_prior(store, uids["prior_2021"]).study_uid == uids["prior_2019"]
    assert choose_prior(store, uids["prior_2019"]) is None
    # the other patient has no prior at all
    assert prior_studies(store, uids["other_patient"]) == []
    assert choose_prior(store, "1.2.3.no.such.study") is None


def test_prior_image_prefers_the_same_view(library):
    from cxrlt_desktop.library.priors import PriorCandidate, PriorImage

    c = PriorCandidate("1", "20200101", "", (PriorImage(1, "a", "LL"), PriorImage(2, "b", "PA")))
    assert prior_image(c, "PA").image_id == 2
    assert prior_image(c, "AP").image_id == 1  # no AP: the first in reading order
    assert prior_image(PriorCandidate("1", "", "", ()), "PA") is None


@pytest.mark.parametrize(
    ("current", "prior", "text"),
    [
        ("20230515", "20190304", "4 years 2 months earlier"),
        ("20230515", "20190516", "3 years 11 months earlier"),  # a day short of 4 years
        ("20230515", "20220515", "1 year earlier"),
        ("20230515", "20230503", "12 days earlier"),
        ("20230515", "20230414", "1 month earlier"),
        ("20230515", "20230515", "same day"),
        ("20230515", "20240101", "7 months later"),
        ("20230515", "", ""),
        ("2023", "20190304", ""),
    ],
)
def test_interval_text(current, prior, text):
    assert interval_text(current, prior) == text


def test_format_date():
    assert format_date("20190304") == "2019-03-04"
    assert format_date("") == format_date(None) == format_date("2019") == "undated"
