"""CSV injection: text cells a spreadsheet would run are written with a leading ``'``, numbers
the app wrote stay numbers. Every check reads the files back with the csv module. The export's
CSVs: tests/export/test_export_csv_safety.py; ``cxrlt score``: tests/library/test_cli.py."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from cxrlt_desktop.export.safe_csv import Numeric, SafeWriter, csv_text, safe_cell

PLANTED = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def _read(text_or_path: str | Path) -> list[list[str]]:
    if isinstance(text_or_path, Path):
        with open(text_or_path, newline="", encoding="utf-8") as f:
            return list(csv.reader(f))
    return list(csv.reader(io.StringIO(text_or_path, newline="")))


def test_text_cells_are_neutralised_and_numbers_kept():
    rows = _read(csv_text(["text", "numeric", "float", "int"], [[p, "", "", ""] for p in PLANTED]))
    # (a carriage return is written as a line break, which the reader gets back in its cell)
    assert [r[0] for r in rows[1:]] == ["'" + p.replace("\r", "\n") for p in PLANTED]
    assert len(rows) == 1 + len(PLANTED)
    # Harmless text is unchanged; an app number stays a number, even negative.
    back = _read(csv_text(["a"] * 6, [["note", Numeric("-0.25"), -0.5, -3, Numeric(""), None]]))
    assert back[1] == ["note", "-0.25", "-0.5", "-3", "", ""]
    assert float(back[1][1]) == -0.25 and float(back[1][2]) == -0.5
    # Text that looks like a number is still text: it came from a person or a file name.
    assert safe_cell("-5") == "'-5"
    # A formula can never pass as a number.
    for p in PLANTED:
        with pytest.raises(ValueError):
            Numeric(p)
    buf = io.StringIO()
    SafeWriter(buf).writerow(["=1+1", Numeric("1e-3")])
    assert _read(buf.getvalue()) == [["'=1+1", "1e-3"]]


def test_prevalence_numbers_stay_numbers(tmp_path, capsys):
    from cxrlt_desktop.cli import main
    from engine.classes import ALL_CLASSES

    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["ImageID", *ALL_CLASSES])
        for i in range(4):
            w.writerow([f"=cmd{i}.png", *("1" if (i + j) % 4 == 0 else "0" for j in range(36))])
    out = tmp_path / "prev.csv"
    assert main(["prevalence", "--labels", str(labels), "--out", str(out)]) == 0
    header, *rows = _read(out)
    assert header == ["name", "display_name", "task", "prevalence", "rare", "threshold"]
    assert len(rows) == 36
    for r in rows:
        assert float(r[3]) == pytest.approx(0.25) and 0 < float(r[5]) < 1
        assert not r[0].startswith("'") and r[2] in ("1", "2")
    assert not list(tmp_path.glob("*.part"))
