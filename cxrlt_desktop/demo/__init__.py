"""Demo data and demo models: synthetic chest radiograph phantoms with drawn findings, and small
models trained on them, so that the whole product can be shown without patient data or weights.

Everything made here is synthetic and marked DEMO (patient names, institution, manifests).
``phantoms`` needs only numpy, cv2 and pydicom; ``models`` imports torch lazily.
"""

from cxrlt_desktop.demo.phantoms import (
    DEMO_INSTITUTION,
    DRAWN_FINDINGS,
    DemoImage,
    PhantomSpec,
    label_set,
    render_phantom,
    sample_findings,
    write_demo_data,
)

__all__ = [
    "DEMO_INSTITUTION",
    "DRAWN_FINDINGS",
    "DemoImage",
    "PhantomSpec",
    "label_set",
    "render_phantom",
    "sample_findings",
    "write_demo_data",
]
