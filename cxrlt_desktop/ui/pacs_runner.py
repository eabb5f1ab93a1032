"""Fetching priors and sending results in the background (a superqt worker in the "pacs" lane).

Signals: ``progress(done, total, text)``, ``finished(kind, text, problems)`` with ``kind``
"fetch", "send" or "retry" (also after an error or a cancel: the text says so), emitted once
the runner is idle again, and ``runningChanged(bool)``. One piece of work at a time; :meth:`cancel` stops it at its next check
(between objects), keeping what was already retrieved or sent.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from cxrlt_desktop.ui.background import Lane


def _fetch_work(store, settings, name: str, study_uid: str, should_stop):  # noqa: ANN001, ANN202
    from cxrlt_desktop.dicomnode.destinations import destination, local_aet
    from cxrlt_desktop.dicomnode.inbox import Inbox
    from cxrlt_desktop.dicomnode.priors import fetch_priors
    from cxrlt_desktop.dicomnode.receiver import node_config

    dest = destination(settings, name)
    cfg = node_config(settings.dicom_node)
    inbox = Inbox(cfg.inbox, cfg.min_free_mb * 1024 * 1024)
    last = None
    for prog in fetch_priors(
        store, dest, local_aet(settings), inbox, study_uid, should_stop=should_stop
    ):
        last = prog
        yield prog.done, prog.total, prog.text
    return last.text, list(last.problems)


def _send_work(store, settings, name: str, study_uid: str | None, retry: bool, should_stop):  # noqa: ANN001, ANN202
    from cxrlt_desktop.dicomnode.destinations import destination, local_aet
    from cxrlt_desktop.dicomnode.send import (
        SendReport,
        retry_failed,
        select_images,
        send_results,
    )

    dest = destination(settings, name)
    aet = local_aet(settings)
    image_ids = select_images(store, study_uids=[study_uid])[0] if study_uid else None
    if retry:
        yield 0, 1, f"sending failed objects to {name} again"
        report = retry_failed(
            store,
            dest,
            aet,
            image_ids=image_ids,
            thresholds=settings.thresholds,
            should_stop=should_stop,
        )
    else:
        report = SendReport()
        for k, image_id in enumerate(image_ids or []):
            yield k, len(image_ids), f"sending results of image {k + 1} of {len(image_ids)}"
            one = send_results(
                store,
                dest,
                aet,
                [image_id],
                thresholds=settings.thresholds,
                should_stop=should_stop,
            )
            for f in ("sent", "failed", "unchanged", "nothing"):
                setattr(report, f, getattr(report, f) + getattr(one, f))
            report.problems.extend(one.problems)
            if one.cancelled:
                report.cancelled = True
                break
    text = (
        f"{dest.name}: {report.sent} sent, {report.failed} failed, {report.unchanged} already "
        f"sent" + (" (cancelled)" if report.cancelled else "")
    )
    return text, list(report.problems)


class PacsRunner(QObject):
    progress = Signal(int, int, str)
    finished = Signal(str, str, list)
    runningChanged = Signal(bool)

    def __init__(self, store, settings_getter, parent: QObject | None = None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.store = store
        self._settings = settings_getter
        self.lane = Lane("pacs", parent=self)
        self.lane.idle.connect(self._on_idle)
        self._kind: str | None = None
        self._outcome: tuple[str, list] | None = None

    @property
    def running(self) -> bool:
        return self.lane.busy

    def destination_names(self) -> list[str]:
        return sorted(self._settings().pacs or {})

    def study_id(self, study_uid: str | None) -> int | None:
        from sqlalchemy import select

        from cxrlt_desktop.store.models import Study

        if not study_uid:
            return None
        with self.store.session() as s, s.begin():
            return s.scalar(select(Study.id).where(Study.study_uid == study_uid))

    def fetch(self, name: str, study_uid: str) -> bool:
        return self._start("fetch", _fetch_work, name, study_uid)

    def send(self, name: str, study_uid: str) -> bool:
        return self._start("send", _send_work, name, study_uid, False)

    def retry(self, name: str, study_uid: str | None) -> bool:
        return self._start("retry", _send_work, name, study_uid, True)

    def cancel(self) -> None:
        self.lane.quit()

    def _start(self, kind: str, func, *args: Any) -> bool:  # noqa: ANN001
        if self.lane.busy:
            return False
        self._kind = kind
        self._outcome = None
        self.lane.run(
            func,
            self.store,
            self._settings(),
            *args,
            stop=True,
            connect={
                "yielded": lambda t: self.progress.emit(*t),
                "returned": self._on_returned,
                "errored": self._on_errored,
            },
        )
        self.runningChanged.emit(True)
        return True

    def _on_returned(self, result) -> None:  # noqa: ANN001
        text, problems = result if result else ("", [])
        self._outcome = (text, list(problems))

    def _on_errored(self, exc: BaseException) -> None:
        what = {"fetch": "Fetching priors", "send": "Sending results", "retry": "Retrying"}
        line = " ".join(str(exc).split()) or type(exc).__name__
        self._outcome = (f"{what.get(self._kind or '', 'PACS')} failed: {line}", [])

    def _on_idle(self) -> None:
        """``finished`` goes out once the lane is idle, so a slot (or a click) reacting to it
        finds the runner ready for the next piece of work."""
        text, problems = self._outcome or ("", [])
        self._outcome = None
        self.runningChanged.emit(False)
        self.finished.emit(self._kind or "", text, problems)


__all__ = ["PacsRunner"]
