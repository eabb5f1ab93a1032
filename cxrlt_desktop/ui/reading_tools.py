"""Reading tools of the main window: the comparison layout (the prior beside the current image,
linked), the measurement tools, the findings panel's "prior" column and measurements, and the
hanging settings (layout and docks at start).

The window makes one :class:`ReadingTools` after its panels; it puts the image panel and the
:class:`~.comparison.PriorViewport` in a splitter of its own (:attr:`ReadingTools.area`) where
the image panel was, and follows the session view: a study opened lists its priors (when the
comparison layout is on), an image displayed loads its measurements
(:class:`~.measure_layer.MeasureLayer`) with the calibration its file's header gives, and
loads them again when another workstation changed them (:meth:`ReadingTools.refresh_measurements`,
called by the window's live updates). Keyboard editing: Tab selects a measurement point, and
while one is selected the arrows move it (the actions of
:data:`~.shortcuts.POINT_MODE`, :class:`~.measure_keys.ModeKeys`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QLabel, QSplitter, QWidget

from cxrlt_desktop.library.measure_geometry import PIXELS, calibration_of
from cxrlt_desktop.ui.comparison import PriorViewport, ViewerLink
from cxrlt_desktop.ui.measure_keys import ModeKeys
from cxrlt_desktop.ui.measure_layer import MeasureLayer
from cxrlt_desktop.ui.shortcuts import POINT_MODE

PRIOR_WIDTH = 40
NEW_STYLE = "color: #c62828; font-weight: bold;"
PRIOR_STYLE = "color: #6d6d6d;"
MEASURE_STYLE = "color: #1b5e20; font-weight: bold;"


class FindingsExtras:
    """A "prior" score beside each finding's score, and the measurements next to the finding
    they inform (Cobb angle: Scoliosis, CTR: cardiomegaly). Rows are the panel's own
    (:meth:`FindingsPanel.row`); this adds two labels to each."""

    def __init__(self, findings: Any) -> None:
        self.findings = findings
        self.prior_labels: dict[str, QLabel] = {}
        self.measure_labels: dict[str, QLabel] = {}
        self._name_widths: dict[str, int] = {}
        for name in findings.finding_names():
            row = findings.row(name)
            lay = row.layout()
            prior = QLabel("")
            prior.setObjectName("priorScore")
            prior.setFixedWidth(PRIOR_WIDTH)
            prior.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            prior.setVisible(False)
            lay.insertWidget(lay.indexOf(row.prob_label) + 1, prior)
            meas = QLabel("")
            meas.setObjectName("findingMeasurement")
            meas.setStyleSheet(MEASURE_STYLE)
            meas.setFixedWidth(self.MEASURE_WIDTH)
            meas.setVisible(False)
            lay.insertWidget(lay.indexOf(row.name_label) + 1, meas)
            self.prior_labels[name] = prior
            self.measure_labels[name] = meas

    def set_prior(self, probs: Any | None, label: str = "") -> None:
        """The prior image's probabilities (None hides the column); a finding above its
        threshold now and below it on the prior is marked new."""
        from engine.classes import ALL_CLASSES

        for i, name in enumerate(ALL_CLASSES):
            lab = self.prior_labels.get(name)
            if lab is None:
                continue
            if probs is None or i >= len(probs) or probs[i] != probs[i]:  # NaN: not scored
                lab.setText("" if probs is None else "-")
                lab.setVisible(probs is not None)
                lab.setToolTip("")
                continue
            p = float(probs[i])
            result = self.findings.row(name).result
            threshold = result.threshold if result is not None else 0.5
            new = bool(result is not None and result.above and p < threshold)
            lab.setText(f"{p:.2f}")
            lab.setStyleSheet(NEW_STYLE if new else PRIOR_STYLE)
            tip = f"{label}: {p:.3f}"
            if new:
                tip += f" (below the threshold {threshold:.2f} then, above it now: new)"
            lab.setToolTip(tip)
            lab.setVisible(True)

    def new_findings(self) -> list[str]:
        """The findings marked new (above threshold now, below it on the prior)."""
        return [
            n
            for n, lab in self.prior_labels.items()
            if not lab.isHidden() and NEW_STYLE in lab.styleSheet()
        ]

    MEASURE_WIDTH = 64

    def set_measurements(self, measurements: list[Any]) -> None:
        by_finding: dict[str, list[str]] = {}
        for m in measurements:
            if m.finding:
                by_finding.setdefault(m.finding, []).append(m.text.split(" (")[0])
        for name, lab in self.measure_labels.items():
            texts = by_finding.get(name, [])
            # the latest one in the row (the row's width is fixed), all in the tool tip
            lab.setText(texts[-1] if texts else "")
            lab.setToolTip("; ".join(m.text for m in measurements if m.finding == name))
            lab.setVisible(bool(texts))
            # the name column gives the label its room, so the bars stay in one line
            row = self.findings.row(name)
            width = self._name_widths.setdefault(name, row.name_label.maximumWidth())
            spacing = row.layout().spacing()
            row.name_label.setFixedWidth(width - self.MEASURE_WIDTH - spacing if texts else width)


class ReadingTools(QObject):
    """Signals: ``message(str)`` for the status bar."""

    message = Signal(str)

    def __init__(
        self,
        window: Any,
        image_panel: Any,
        findings: Any,
        view: Any,
        *,
        save_settings: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(window)
        self.window = window
        self.image_panel = image_panel
        self.view = view
        self._save_settings = save_settings
        store = lambda: getattr(window, "store", None)  # noqa: E731
        self.prior = PriorViewport(store)
        self.area = QSplitter(Qt.Orientation.Horizontal)
        self.area.setObjectName("readingArea")
        self.link = ViewerLink(image_panel.viewer, self.prior.viewer)
        self.prior.link_box.toggled.connect(self.link.set_enabled)
        self.prior.priorShown.connect(self._on_prior_shown)
        self.measure = MeasureLayer(image_panel.viewer, store, lambda: self._reader(), parent=self)
        self.measure.message.connect(self.message)
        # Esc cancels only while a tool is in use or a point is selected: otherwise it stays
        # the note field's undo; Tab selects a point only when there is one to select
        self._point_keys: ModeKeys | None = None
        for sig in (self.measure.toolChanged, self.measure.pointChanged):
            sig.connect(lambda _on: self._sync_actions())
        self.measure.changed.connect(self._sync_actions)
        QTimer.singleShot(0, self._sync_actions)
        self.extras = FindingsExtras(findings)
        self.measure.changed.connect(
            lambda: self.extras.set_measurements(self.measure.measurements())
        )
        view.studyOpened.connect(self._on_study_opened)
        view.imageDisplayed.connect(self._on_image_displayed)
        self._study: str | None = None

    # ------------------------------------------------------------------ layout
    def install(self, splitter: QSplitter, index: int) -> None:
        """Put the reading area where the image panel is in ``splitter``."""
        self._outer, self._index = splitter, index
        splitter.replaceWidget(index, self.area)
        self.area.addWidget(self.image_panel)
        self.area.addWidget(self.prior)
        self.image_panel.show()
        self.area.setStretchFactor(0, 1)
        self.area.setStretchFactor(1, 1)
        self.set_comparison(self._settings().hanging.get("layout") == "comparison", save=False)

    def comparison(self) -> bool:
        return not self.prior.isHidden()

    def toggle_comparison(self) -> None:
        """One key: the prior beside the current image, or the current image alone; the choice
        is remembered in the settings."""
        self.set_comparison(not self.comparison())

    def set_comparison(self, on: bool, *, save: bool = True) -> None:
        self.prior.setVisible(on)
        if on:
            w = max(self.area.width(), 2)
            self.area.setSizes([w // 2, w - w // 2])
            self._load_prior()
        else:
            self.extras.set_prior(None)
        # the viewport changed size: fit the image(s) again once the layout has settled
        QTimer.singleShot(0, self.image_panel.viewer.fit)
        if save:
            settings = self._settings()
            settings.hanging = {**settings.hanging, "layout": "comparison" if on else "single"}
            if self._save_settings is not None:
                try:
                    self._save_settings()
                except Exception as exc:  # noqa: BLE001 - the layout still changes
                    self.message.emit(f"Layout not remembered: {exc}")
        self.message.emit("Comparison layout: prior beside the image" if on else "Single image")

    def apply_docks(self, docks: dict[str, QWidget]) -> None:
        """Show the dock panels the hanging settings list at start, hide the others."""
        wanted = set(self._settings().hanging.get("docks", []))
        for name, dock in docks.items():
            dock.setVisible(name in wanted)

    def toggle_dock(self, name: str) -> None:
        dock = getattr(self.window, name, None)
        if dock is not None:
            dock.setVisible(not dock.isVisible())
            if dock.isVisible():
                dock.raise_()

    # ------------------------------------------------------------------ measurements
    def start_measure(self, kind: str) -> None:
        self.measure.start(kind)

    def _sync_actions(self) -> None:
        actions = getattr(self.window, "actions_by_id", None)
        if not actions:
            return
        m = self.measure
        drawing, point = m.kind is not None, m.selected_point is not None
        actions["cancel_measure"].setEnabled(drawing or point)
        for aid in ("next_measure_point", "previous_measure_point"):
            actions[aid].setEnabled(bool(m.measurements()) and not drawing)
        if self._point_keys is None:
            self._point_keys = ModeKeys(actions, POINT_MODE)
        if self._point_keys.on != point:
            self._point_keys.set_on(point)

    def cancel_measure(self) -> None:
        """Esc: drop the points of the measurement being drawn, or end keyboard editing."""
        if self.measure.kind is not None:
            self.measure.cancel()
            self.message.emit("Measurement cancelled")
        elif self.measure.selected_point is not None:
            self.measure.leave_point()
            self.message.emit("Keyboard editing ended")

    def delete_measurement(self) -> None:
        self.measure.delete_selected()

    def step_point(self, step: int) -> None:
        """Tab / Shift+Tab: select the next / previous measurement point."""
        if not self.measure.step_point(step):
            self.message.emit("No measurement on this image to edit")

    def nudge_point(self, dx: int, dy: int) -> None:
        """The arrows while a point is selected: move it by display pixels."""
        self.measure.nudge(dx, dy)

    def refresh_measurements(self) -> None:
        """Another workstation may have changed the image's measurements: shown as stored."""
        try:
            self.measure.refresh()
        except Exception as exc:  # noqa: BLE001 - shown again at the next change
            self.message.emit(f"Could not read the measurements: {exc}")

    # ------------------------------------------------------------------ session
    def _settings(self) -> Any:
        return self.window.settings

    def _reader(self) -> str | None:
        from cxrlt_desktop.ui.review_controller import reviewer_name

        return reviewer_name(self._settings())

    def _current_view(self) -> str | None:
        entry = self.view.session.current
        return None if entry is None else (entry.meta or {}).get("ViewPosition")

    def _on_study_opened(self, study_uid: str) -> None:
        self._study = study_uid
        if self.comparison():
            self._load_prior()

    def _load_prior(self) -> None:
        self.prior.set_study(self._study, self._current_view())
        if self.prior.prior is None:
            self.extras.set_prior(None)

    def _on_image_displayed(self, image_id: int) -> None:
        from cxrlt_desktop.ui.display import read_header

        entry = self.view.session.current
        cal = PIXELS
        if entry is not None and entry.image_id == image_id:
            header = read_header(entry.path)
            cal = calibration_of(header) if header is not None else calibration_of(entry.meta)
        self.measure.set_image(image_id, cal)
        if self.comparison() and self.prior.viewer.has_image():
            self._link_prior()  # its scores were shown when it was

    def _make_room_for_prior_column(self) -> None:
        """The findings panel (after the reading area in the window's splitter) widens by the
        prior column, taken from the panel before the reading area (the worklist) and then the
        reading area, so the verdict buttons keep their room."""
        outer = getattr(self, "_outer", None)
        if outer is None or self._index + 1 >= outer.count():
            return
        sizes = outer.sizes()
        panel = outer.widget(self._index + 1)
        need = panel.minimumWidth() + PRIOR_WIDTH + 48
        if sizes[self._index + 1] < need:
            grow = need - sizes[self._index + 1]
            sizes[self._index + 1] = need
            if self._index > 0:
                take = min(grow, max(0, sizes[self._index - 1] - 200))
                sizes[self._index - 1] -= take
                grow -= take
            sizes[self._index] -= grow
            outer.setSizes(sizes)
        w = max(self.area.width(), 2)
        self.area.setSizes([w // 2, w - w // 2])  # the two viewports alike

    def _on_prior_shown(self, study_uid: str) -> None:
        self._link_prior()
        self._show_prior_scores(study_uid)

    def _link_prior(self) -> None:
        """Bring the prior to the current image's zoom and window (when linked)."""
        a = self.image_panel.viewer
        if self.link.enabled and a.has_image():
            self.link._range(a, self.prior.viewer)
            self.link._window(a, self.prior.viewer, *a.window())

    def _show_prior_scores(self, study_uid: str) -> None:
        from cxrlt_desktop.library.priors import format_date
        from cxrlt_desktop.ui.store_access import study_images

        store = getattr(self.window, "store", None)
        if store is None or not study_uid or self.prior.image_id is None:
            self.extras.set_prior(None)
            return
        entries = [e for e in study_images(store, study_uid) if e.image_id == self.prior.image_id]
        probs = entries[0].probs if entries else None
        date = format_date(self.prior.prior.study_date) if self.prior.prior else ""
        self.extras.set_prior(probs, f"prior {date}")
        if probs is not None:
            self._make_room_for_prior_column()


__all__ = ["FindingsExtras", "ReadingTools"]
