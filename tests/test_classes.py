"""The 36 output classes, their order and the rare flags, written out by hand.

The list is the CXR-LT 2026 class table as docs/engine.md gives it ("The 36 classes"): 30 Task 1
findings with the label files' spelling, then the 6 zero-shot findings. It is typed here rather
than read from engine.classes or resources/classes.csv, so that a reordered, renamed, dropped or
re-flagged class in the code fails this test instead of silently moving every score column.
"""

from __future__ import annotations

from engine.classes import (
    ALL_CLASSES,
    NORMAL_INDEX,
    RARE_CLASSES,
    TASK1_CLASSES,
    TASK2_CLASSES,
    class_table,
)

# (name as the label files spell it, rare): rare = prevalence below 1 %, or a zero-shot class
EXPECTED = [
    ("Normal", False),
    ("aortic elongation", False),
    ("cardiomegaly", False),
    ("pleural effusion", False),
    ("Nodule", False),
    ("atelectasis", False),
    ("pleural thickening", False),
    ("aortic atheromatosis", False),
    ("Support Devices", False),
    ("alveolar pattern", False),
    ("fracture", False),
    ("Hernia", False),
    ("Emphysema", True),
    ("azygos lobe", True),
    ("Hydropneumothorax", True),
    ("Kyphosis", False),
    ("Mass", True),
    ("Pneumothorax", True),
    ("Subcutaneous Emphysema", True),
    ("pneumoperitoneo", True),
    ("vascular hilar enlargement", False),
    ("vertebral degenerative changes", False),
    ("hyperinflated lung", False),
    ("interstitial pattern", False),
    ("central venous catheter", False),
    ("hypoexpansion", False),
    ("bronchiectasis", False),
    ("hemidiaphragm elevation", False),
    ("sternotomy", False),
    ("calcified densities", False),
    # Task 2: zero-shot, unseen in training, always rare
    ("Scoliosis", True),
    ("Osteopenia", True),
    ("Bulla", True),
    ("Infarction", True),
    ("Adenopathy", True),
    ("goiter", True),
]


def test_the_36_classes_in_output_order():
    names = [n for n, _ in EXPECTED]
    assert len(names) == 36 and len(set(names)) == 36
    assert list(ALL_CLASSES) == names
    assert list(TASK1_CLASSES) == names[:30]
    assert list(TASK2_CLASSES) == names[30:]
    assert ALL_CLASSES[NORMAL_INDEX] == "Normal"
    assert [c.name for c in class_table()] == names
    assert [c.task for c in class_table()] == [1] * 30 + [2] * 6


def test_rare_flags():
    rare = [n for n, r in EXPECTED if r]
    assert len(rare) == 13  # 7 Task 1 findings below 1 % prevalence + the 6 zero-shot ones
    assert list(RARE_CLASSES) == rare
    assert [c.rare for c in class_table()] == [r for _, r in EXPECTED]
    # the flag follows its documented rule wherever a prevalence is known
    for c in class_table():
        if c.prevalence is not None:
            assert c.rare == (c.prevalence < 0.01), c
        else:
            assert c.task == 2 and c.rare, c
