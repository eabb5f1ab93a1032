"""Department mode: the score_job queue, worker heartbeats, study claims, one open run per set.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

New tables (nothing to backfill). Before the partial unique index ``uq_scoring_run_open``
(one unfinished scoring_run per model set) is created, older duplicates are closed: of several
open runs of one model set only the newest stays open (two concurrent score_library processes
could create two).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "score_job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("model_set_id", sa.Integer(), nullable=False),
        sa.Column("image_version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("worker", sa.String(length=128), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"]),
        sa.ForeignKeyConstraint(["model_set_id"], ["model_set.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "image_id", "model_set_id", "image_version", "kind", name="uq_score_job"
        ),
    )
    op.create_index("ix_score_job_image_id", "score_job", ["image_id"])
    op.create_index("ix_score_job_claim", "score_job", ["state", "model_set_id", "priority", "id"])
    op.create_table(
        "worker",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("host", sa.String(length=256), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("model_set_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_heartbeat", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n_done", sa.Integer(), nullable=False),
        sa.Column("n_failed", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["model_set_id"], ["model_set.id"]),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "study_claim",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("reader", sa.String(length=128), nullable=False),
        sa.Column("workstation", sa.String(length=256), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"]),
        sa.PrimaryKeyConstraint("study_id", "reader"),
    )
    # Close all but the newest open run of each model set, then allow only one.
    op.execute(
        """
        UPDATE scoring_run SET finished_at = started_at
        WHERE finished_at IS NULL AND id NOT IN (
            SELECT max(id) FROM scoring_run WHERE finished_at IS NULL GROUP BY model_set_id
        )
        """
    )
    op.create_index(
        "uq_scoring_run_open",
        "scoring_run",
        ["model_set_id"],
        unique=True,
        sqlite_where=sa.text("finished_at IS NULL"),
        postgresql_where=sa.text("finished_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_scoring_run_open", table_name="scoring_run")
    op.drop_table("study_claim")
    op.drop_table("worker")
    op.drop_index("ix_score_job_claim", table_name="score_job")
    op.drop_index("ix_score_job_image_id", table_name="score_job")
    op.drop_table("score_job")
