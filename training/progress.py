"""The progress records :func:`training.train.train` yields.

Consumers tell them apart with ``isinstance`` or ``match``. :class:`EpochRecord` is also one
entry of ``history.json`` and of the history in ``last.pt``: :meth:`EpochRecord.to_json`
(``dataclasses.asdict``) gives that entry, with the keys and order those files have always had.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class TrainInfo:
    """A message for the user (data problems, resuming, a shortened warm-up, ...)."""

    message: str


@dataclass(frozen=True)
class TrainStep:
    """One optimiser step: 1-based ``epoch`` and ``step`` of ``steps``, its loss and LR."""

    epoch: int
    step: int
    steps: int
    loss: float
    lr: float


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch, as the history files hold it (None for a non-finite value)."""

    epoch: int
    phase: str
    train_loss: float | None
    skipped_steps: int
    val_mAP: float | None
    val_loss: float | None
    lr: float
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The history entry: a plain dict with the field names as keys."""
        return asdict(self)


@dataclass(frozen=True)
class TrainEpoch(EpochRecord):
    """An :class:`EpochRecord` as yielded, with whether it is the best epoch so far (saved)."""

    best: bool


@dataclass(frozen=True)
class TrainDone:
    """The end of a training: the best epoch and the files written for it."""

    best_epoch: int
    best_mAP: float | None
    checkpoint: str
    manifest: str


TrainRecord = TrainInfo | TrainStep | TrainEpoch | TrainDone
"""Anything :func:`training.train.train` yields."""
