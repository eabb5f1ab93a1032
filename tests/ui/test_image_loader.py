"""The viewer's image loader: one decode per image however often it is asked for while the
decode runs (a prefetch then the request of the same image), and only the latest request's
image announced, on a real scanned library with real files."""

from __future__ import annotations

from cxrlt_desktop.ui.image_loader import ImageLoader
from cxrlt_desktop.ui.store_access import study_images


def _images(window, store):
    model = window.worklist_model
    out = []
    for r in range(model.rowCount()):
        out.extend(study_images(store, model.study_uid(r)))
    return out


def test_a_prefetched_image_requested_while_it_decodes_is_decoded_once(
    qtbot, make_scored_window, store
):
    window = make_scored_window(3)
    a, b, c = _images(window, store)[:3]
    loader = ImageLoader(store=store)
    loaded = []
    loader.loaded.connect(lambda i, _d: loaded.append(i))

    loader.prefetch(a.image_id, a.path)
    assert loader.request(a.image_id, a.path) is None  # in flight: not started again
    assert len(loader.lane.workers()) == 1
    qtbot.waitUntil(lambda: loaded == [a.image_id], timeout=60_000)
    assert loader.cached(a.image_id)
    assert loader.request(a.image_id, a.path) is not None  # from the cache, no decode

    # b asked for, then c: b is cached but not announced (the reader has moved on); c is
    loaded.clear()
    assert loader.request(b.image_id, b.path) is None
    assert loader.request(c.image_id, c.path) is None
    qtbot.waitUntil(lambda: loader.cached(b.image_id) and loader.cached(c.image_id), timeout=60_000)
    qtbot.waitUntil(lambda: c.image_id in loaded, timeout=10_000)
    assert loaded == [c.image_id]
    loader.lane.quit()
    loader.lane.wait(30_000)


def test_a_decode_finishing_after_the_loader_is_gone_is_dropped(qtbot, make_scored_window, store):
    """A window closed (and deleted) while a decode ran: the result arrives on the GUI thread
    after the loader's Qt object is gone and is dropped, not emitted from a deleted object."""
    import shiboken6
    from PySide6.QtCore import QCoreApplication

    window = make_scored_window(1)
    (a,) = _images(window, store)[:1]
    loader = ImageLoader(store=store)
    loaded = []
    loader.loaded.connect(lambda i, _d: loaded.append(i))
    assert loader.request(a.image_id, a.path) is None
    assert loader.lane.wait(60_000)  # decoded; its result still queued for the GUI thread
    shiboken6.delete(loader)
    for _ in range(5):
        QCoreApplication.processEvents()  # delivers the result: raised here before
    assert loaded == []
