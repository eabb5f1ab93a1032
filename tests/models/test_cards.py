"""Model cards: the facts in export READMEs, SR Contributing Equipment and the GUI, matched to
the model that made the scores by the sha256 of its weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cxrlt_desktop.models import RegisteredModel, Registry, contribution_facts, model_facts_text
from cxrlt_desktop.models.cards import all_cards


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_cards_hold_the_issue_facts():
    cards = all_cards()
    assert {"task1-csra", "task1-mlp", "whyxrayclip", "demo"} <= set(cards)
    t = cards["task1-csra"]
    assert "not for diagnosis" in t.intended_use.lower()
    assert "PadChest" in t.training_data and "MIMIC-CXR" in t.training_data
    assert "Task 1 mAP 0.583" in t.reported_results and "Task 2 mAP 0.467" in t.reported_results
    assert "frontal" in t.known_limits and "noisy" in t.known_limits
    assert "uncalibrated" in cards["whyxrayclip"].known_limits
    # every pin names a card and a licence that exist
    doc = json.loads(
        (Path(__file__).resolve().parents[2] / "resources/models/published.json").read_text()
    )
    for m in doc["models"]:
        assert m["card"] in cards and m["licence"] in doc["licences"]


def test_model_facts_text_matches_models_by_sha256(user_dirs, tiny_models):
    task1, clip = tiny_models
    reg = Registry()
    reg.put(RegisteredModel("t", "task1-csra", str(task1), _sha(task1), 1, card="task1-csra"))
    reg.save()
    desc = {
        "models": [
            {"role": "task1-csra", "sha256": _sha(task1), "arch": "convnextv2_atto"},
            {"role": "clip", "sha256": "ab" * 32, "arch": "open_clip"},
        ],
        "settings": {},
    }
    text = model_facts_text(desc)
    assert "task1-csra (sha256 " + _sha(task1)[:16] in text
    assert "Task 1 mAP 0.583" in text and "Intended use: Research triage" in text
    assert "clip (sha256 abababab" in text and "no model card" in text
    assert "docs/models.md" in text
    # the same for a list of dicts (what the export passes)
    assert model_facts_text(desc["models"]) == text
    line = contribution_facts(desc["models"][0])
    assert len(line) <= 1024 and "Not for diagnosis" in line and "docs/models.md" in line


def test_demo_model_gets_the_demo_card(user_dirs, tiny_models, tmp_path):
    from engine.random_models import write_random_task1

    demo = write_random_task1(tmp_path / "d" / "demo_csra.safetensors", head="csra", seed=9)
    (tmp_path / "d" / "manifest.json").write_text(json.dumps({"demo": True}))
    text = model_facts_text([{"role": "task1-csra", "sha256": _sha(demo), "path": str(demo)}])
    assert "DEMO model" in text and "never use its scores on patients" in text


def test_export_readme_carries_the_model_facts(user_dirs, tiny_models, tmp_path):
    from cxrlt_desktop.export.feedback import ExportResult
    from cxrlt_desktop.export.readme import readme_text

    task1, _ = tiny_models
    reg = Registry()
    reg.put(RegisteredModel("t", "task1-csra", str(task1), _sha(task1), 1, card="task1-csra"))
    reg.save()
    opts = {"include_phi": False, "shift_dates": False, "copy_images": False, "sr": False}
    res = ExportResult(out_dir=tmp_path, options=opts)
    models = [{"role": "task1-csra", "sha256": _sha(task1), "arch": "convnextv2_atto"}]
    text = readme_text(res, {}, models, [])
    assert "Model facts" in text and "Task 1 mAP 0.583" in text
    assert "Adult frontal chest radiographs only" in text
    assert "Model facts" not in readme_text(res, {}, [], [])


def test_gui_model_line_and_about(qtbot, user_dirs, tiny_models):
    from cxrlt_desktop.settings import Settings
    from cxrlt_desktop.ui.model_facts import about_models_html, model_line

    task1, clip = tiny_models
    reg = Registry()
    reg.put(
        RegisteredModel("t", "task1-csra", str(task1.resolve()), _sha(task1), 1, card="task1-csra")
    )
    reg.save()
    s = Settings(task1_checkpoints=[task1], clip_model=clip)
    text, tip = model_line(s)
    assert text.startswith("Models: CXR-LT 2026 Task 1 classifier")
    assert "clip (not registered, no model card)" in text
    assert "Task 1 mAP 0.583" in tip
    about = about_models_html(s)
    assert "Models in use" in about and "Limits:" in about
    assert model_line(Settings()) == ("Models: none configured", "")


def test_findings_panel_model_line_and_about_box(qtbot, user_dirs, tiny_models):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

    from cxrlt_desktop.settings import Settings
    from cxrlt_desktop.ui.findings_panel import FindingsPanel
    from cxrlt_desktop.ui.model_facts import model_line
    from cxrlt_desktop.ui.shortcuts import about_box

    task1, _ = tiny_models
    reg = Registry()
    reg.put(
        RegisteredModel("t", "task1-csra", str(task1.resolve()), _sha(task1), 1, card="task1-csra")
    )
    reg.save()
    s = Settings(task1_checkpoints=[task1])
    panel = FindingsPanel()
    qtbot.addWidget(panel)
    panel.set_model_line(*model_line(s))
    assert panel.model_line.text().startswith("Models: CXR-LT 2026 Task 1 classifier")
    assert "Task 1 mAP 0.583" in panel.model_line.toolTip()

    parent = QWidget()
    qtbot.addWidget(parent)
    parent.settings = s
    seen = []

    def read_and_close():
        box = next(w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox))
        seen.append(box.text())
        box.accept()

    QTimer.singleShot(200, read_and_close)
    about_box(parent, "CXR-LT Desktop")
    assert seen and "Models in use" in seen[0] and "Task 1 mAP 0.583" in seen[0]


def test_ai_result_sr_names_the_model_facts(user_dirs, tiny_models):
    import numpy as np

    from cxrlt_desktop.export.ai_sr import AIResult, build_ai_result_sr
    from cxrlt_desktop.export.sr_common import SRSubject
    from engine.classes import ALL_CLASSES

    task1, _ = tiny_models
    reg = Registry()
    reg.put(RegisteredModel("t", "task1-csra", str(task1), _sha(task1), 1, card="task1-csra"))
    reg.save()
    subject = SRSubject(
        patient_id="P1",
        patient_name="P1",
        patient_sex="",
        birth_date="",
        study_uid="2.25.1",
        series_uid="2.25.2",
        sop_uid="2.25.3",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
        modality="DX",
        study_date="20260101",
        study_time="120000",
        accession="",
    )
    probs = np.full(len(ALL_CLASSES), np.nan, dtype=np.float32)
    probs[0] = 0.7
    res = AIResult(
        subject=subject,
        probabilities=probs,
        thresholds={ALL_CLASSES[0]: 0.5},
        model_set_key="k" * 64,
        models=[
            {"role": "task1-csra", "sha256": _sha(task1), "arch": "convnextv2_atto"},
            {"role": "clip", "sha256": "cd" * 32, "arch": "open_clip"},
        ],
        app_version="1",
    )
    sr = build_ai_result_sr(res)
    descs = [str(i.get("ContributionDescription", "")) for i in sr.ContributingEquipmentSequence]
    ours = [d for d in descs if d.startswith("model ")]
    assert len(ours) == 2
    assert "CXR-LT 2026 Task 1 classifier" in ours[0] and "Not for diagnosis" in ours[0]
    assert "docs/models.md" in ours[0] and len(ours[0]) <= 1024
    assert "no model card" in ours[1]


def test_main_window_shows_the_model_line(qtbot, user_dirs, tiny_models, tmp_path):
    from cxrlt_desktop.settings import Settings
    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.ui.app import create_main_window

    task1, clip = tiny_models
    reg = Registry()
    reg.put(
        RegisteredModel("t", "task1-csra", str(task1.resolve()), _sha(task1), 1, card="task1-csra")
    )
    reg.save()
    store = open_store(f"sqlite:///{tmp_path / 'w.db'}")
    s = Settings(task1_checkpoints=[task1], task1_arch="convnextv2_atto", device="cpu")
    w = create_main_window(
        store,
        s,
        first_start_dialog=False,
        settings_path=tmp_path / "s.toml",
        engine_overrides={"image_size": 64, "cache_dir": tmp_path / "cache"},
    )
    qtbot.addWidget(w)
    try:
        assert w.findings.model_line.text().startswith("Models: CXR-LT 2026 Task 1 classifier")
        assert "Task 1 mAP 0.583" in w.findings.model_line.toolTip()
    finally:
        if w.jobs.is_running():
            w.jobs.cancel()
            with qtbot.waitSignal(w.jobs.finished, timeout=120_000):
                pass
        w.close()
        store.close()
