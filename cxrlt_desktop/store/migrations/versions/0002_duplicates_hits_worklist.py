"""Duplicate files, the finding_hit table and the worklist indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Backfills ``finding_hit`` from the current predictions (default thresholds, as 0001 scored
them) and ``study.reviewed`` from ``study.review_status``.
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "duplicate_file",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=4096), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("mtime", sa.Float(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("missing", sa.Boolean(), nullable=False),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("path"),
    )
    op.create_index("ix_duplicate_file_image_id", "duplicate_file", ["image_id"], unique=False)

    op.create_table(
        "finding_hit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("finding", sa.String(length=64), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"]),
        sa.ForeignKeyConstraint(["prediction_id"], ["prediction.id"]),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_finding_hit_finding_study", "finding_hit", ["finding", "study_id"])
    op.create_index("ix_finding_hit_image_id", "finding_hit", ["image_id"])
    op.create_index("ix_finding_hit_prediction_id", "finding_hit", ["prediction_id"])
    op.create_index("ix_finding_hit_study_id", "finding_hit", ["study_id"])

    # A plain ADD COLUMN with a default: no table rebuild needed on SQLite.
    op.add_column(
        "study", sa.Column("reviewed", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.create_index("ix_study_worklist", "study", ["priority", "study_date", "id"])
    op.create_index(
        "ix_study_reviewed_worklist", "study", ["reviewed", "priority", "study_date", "id"]
    )

    bind = op.get_bind()
    study = sa.table(
        "study", sa.column("reviewed", sa.Boolean), sa.column("review_status", sa.String)
    )
    bind.execute(study.update().where(study.c.review_status == "reviewed").values(reviewed=True))
    _backfill_hits(bind)


def _backfill_hits(bind) -> None:  # noqa: ANN001
    # Frozen copy of the class order and default thresholds at the time of this revision.
    from engine.classes import ALL_CLASSES, DEFAULT_THRESHOLDS

    rows = bind.execute(
        sa.text(
            "SELECT p.id, p.image_id, se.study_id, p.probs FROM image i "
            "JOIN prediction p ON p.id = i.current_prediction_id "
            "JOIN series se ON se.id = i.series_id"
        )
    ).fetchall()
    thresholds = np.array([DEFAULT_THRESHOLDS[c] for c in ALL_CLASSES])
    hits = []
    for pred_id, image_id, study_id, blob in rows:
        probs = np.frombuffer(blob, dtype="<f4").astype(np.float64)
        for k in range(1, len(ALL_CLASSES)):  # Normal (k = 0) is not a finding
            if not np.isnan(probs[k]) and probs[k] >= thresholds[k]:
                hits.append(
                    {
                        "prediction_id": pred_id,
                        "image_id": image_id,
                        "study_id": study_id,
                        "finding": ALL_CLASSES[k],
                        "probability": float(probs[k]),
                        "threshold": float(thresholds[k]),
                    }
                )
    if hits:
        bind.execute(
            sa.text(
                "INSERT INTO finding_hit (prediction_id, image_id, study_id, finding, probability, "
                "threshold) VALUES (:prediction_id, :image_id, :study_id, :finding, :probability, "
                ":threshold)"
            ),
            hits,
        )


def downgrade() -> None:
    op.drop_index("ix_study_reviewed_worklist", table_name="study")
    op.drop_index("ix_study_worklist", table_name="study")
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_column("reviewed")
    op.drop_table("finding_hit")
    op.drop_table("duplicate_file")
