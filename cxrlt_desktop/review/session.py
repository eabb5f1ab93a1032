"""A reading session as plain Python: the open study, its images, the current image, the image the
note belongs to, navigation, and what "reviewed" means.

No Qt here. The window builds one :class:`ReviewSession` with a function that loads a study's
images (in reading order), connects to its callbacks and renders what they announce; user actions
(keys, buttons, the worklist) call its methods. Every callback fires once per change, after the
state changed, on the caller's thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol


class ImageLike(Protocol):
    """What the session needs of an image (``cxrlt_desktop.ui.store_access.ImageEntry`` has it)."""

    image_id: int
    series_uid: str | None
    prediction_id: int | None


class Callbacks:
    """A list of callables called with the same arguments: ``connect(fn)``, ``emit(*args)``."""

    def __init__(self) -> None:
        self._slots: list[Callable[..., Any]] = []

    def connect(self, slot: Callable[..., Any]) -> Callable[..., Any]:
        self._slots.append(slot)
        return slot

    def disconnect(self, slot: Callable[..., Any]) -> None:
        self._slots.remove(slot)

    def emit(self, *args: Any) -> None:
        for slot in list(self._slots):
            slot(*args)


def image_reviewed(verdicts: Mapping[str, str]) -> bool:
    """An image counts as reviewed once it has at least one verdict."""
    return bool(verdicts)


def study_status(n_images: int, n_reviewed: int) -> str:
    """``reviewed`` when every usable image has a verdict, ``partial`` when some have, else
    ``unreviewed`` (the rule the store's worklist status follows)."""
    if n_images and n_reviewed >= n_images:
        return "reviewed"
    return "partial" if n_reviewed else "unreviewed"


def series_starts(images: Sequence[ImageLike]) -> list[int]:
    """Index of the first image of each series, in reading order."""
    return [
        i
        for i, entry in enumerate(images)
        if i == 0 or entry.series_uid != images[i - 1].series_uid
    ]


def study_after(order: Sequence[str], current: str | None, delta: int) -> str | None:
    """The study ``delta`` places from ``current`` in the worklist ``order`` (the first one when
    ``current`` is not listed); None past either end."""
    row = order.index(current) if current is not None and current in order else -1
    target = row + delta if row >= 0 else 0
    return order[target] if 0 <= target < len(order) else None


class ReviewSession:
    """The state of a reading session, with a callback list per kind of change.

    Callbacks
    ---------
    study_opened(study_uid)
        Another study is open (its images loaded, none current yet).
    note_target_changed(old_image_id, new_image_id)
        The note now belongs to another image (or to none): a note typed but not saved belongs
        to ``old_image_id``. Fires before ``image_changed`` of the same move.
    image_changed(entry)
        Another image (or the same one again, by index) is current.
    image_updated(entry)
        The current image got a new prediction (same image, new scores).
    status_changed(status)
        The open study's review status (:func:`study_status`) changed.
    """

    def __init__(self, load_images: Callable[[str], Sequence[ImageLike]]) -> None:
        self._load_images = load_images
        self.study_uid: str | None = None
        self.images: list[Any] = []
        self.index = -1
        self.note_image_id: int | None = None
        self._reviewed: set[int] = set()
        self.study_opened = Callbacks()
        self.note_target_changed = Callbacks()
        self.image_changed = Callbacks()
        self.image_updated = Callbacks()
        self.status_changed = Callbacks()

    # ------------------------------------------------------------------ state
    @property
    def current(self) -> Any | None:
        if 0 <= self.index < len(self.images):
            return self.images[self.index]
        return None

    @property
    def n_series(self) -> int:
        return len({e.series_uid for e in self.images})

    @property
    def status(self) -> str:
        return study_status(len(self.images), len(self._reviewed))

    # ------------------------------------------------------------------ study
    def open_study(self, study_uid: str) -> None:
        """Open a study: load its images; the first one becomes current (if any)."""
        before = self.status if self.study_uid is not None else None
        self.study_uid = study_uid
        self.images = list(self._load_images(study_uid))
        self.index = -1
        self._reviewed = set()
        self.study_opened.emit(study_uid)
        if before is not None and before != self.status:
            self.status_changed.emit(self.status)
        if self.images:
            self.go_to(0)
        else:
            self._retarget_note(None)

    def study_after(
        self, order: Sequence[str], delta: int, current: str | None = None
    ) -> str | None:
        """The study to open for "next" (``delta=1``) / "previous" (``-1``) in ``order``,
        counted from ``current`` (default: the open study)."""
        return study_after(order, self.study_uid if current is None else current, delta)

    def reload(self) -> bool:
        """Pick up new predictions of the open study's images; True when the current one got
        one (``image_updated`` then fired)."""
        if self.study_uid is None or self.current is None:
            return False
        fresh = {e.image_id: e for e in self._load_images(self.study_uid)}
        changed_current = False
        for i, old in enumerate(self.images):
            new = fresh.get(old.image_id)
            if new is not None and new.prediction_id != old.prediction_id:
                self.images[i] = new
                changed_current = changed_current or i == self.index
        if changed_current:
            self.image_updated.emit(self.images[self.index])
        return changed_current

    # ------------------------------------------------------------------ images
    def go_to(self, index: int) -> bool:
        """Make image ``index`` current (the note moves with it); False when out of range."""
        if not (0 <= index < len(self.images)):
            return False
        self.index = index
        entry = self.images[index]
        self._retarget_note(entry.image_id)
        self.image_changed.emit(entry)
        return True

    def next_image(self) -> bool:
        return self.index < len(self.images) - 1 and self.go_to(self.index + 1)

    def previous_image(self) -> bool:
        return self.index > 0 and self.go_to(self.index - 1)

    def next_series(self) -> bool:
        """The first image of the next series; False at the last series."""
        later = [i for i in series_starts(self.images) if i > self.index]
        return bool(later) and self.go_to(later[0])

    def previous_series(self) -> bool:
        """From inside a series, the first image of the series before the current one."""
        starts = series_starts(self.images)
        current = max((i for i in starts if i <= self.index), default=None)
        earlier = [i for i in starts if current is not None and i < current]
        return bool(earlier) and self.go_to(earlier[-1])

    # ------------------------------------------------------------------ reviews
    def set_verdicts(self, image_id: int, verdicts: Mapping[str, str]) -> None:
        """What the store holds for an image of the open study (after a read or a write)."""
        if image_id not in {e.image_id for e in self.images}:
            return
        before = self.status
        if image_reviewed(verdicts):
            self._reviewed.add(image_id)
        else:
            self._reviewed.discard(image_id)
        if self.status != before:
            self.status_changed.emit(self.status)

    def is_reviewed(self, image_id: int) -> bool:
        return image_id in self._reviewed

    # ------------------------------------------------------------------ internals
    def _retarget_note(self, image_id: int | None) -> None:
        old = self.note_image_id
        if old == image_id:
            return
        self.note_image_id = image_id
        self.note_target_changed.emit(old, image_id)


__all__ = [
    "Callbacks",
    "ImageLike",
    "ReviewSession",
    "image_reviewed",
    "series_starts",
    "study_after",
    "study_status",
]
