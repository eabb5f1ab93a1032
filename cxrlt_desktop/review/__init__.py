"""The state of a reading session, without Qt: which study is open, which image is shown, which
image the note belongs to, and what counts as reviewed.

:class:`ReviewSession` holds that state and announces each change through plain callbacks
(:class:`Callbacks`); the GUI (``cxrlt_desktop.ui``) renders it and feeds it user actions, in the
way a viewer model and its Qt view are split. Tests drive it without a QApplication.
"""

from cxrlt_desktop.review.session import (
    Callbacks,
    ReviewSession,
    image_reviewed,
    series_starts,
    study_after,
    study_status,
)

__all__ = [
    "Callbacks",
    "ReviewSession",
    "image_reviewed",
    "series_starts",
    "study_after",
    "study_status",
]
