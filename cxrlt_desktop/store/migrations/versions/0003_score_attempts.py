"""Scoring attempts: the score_attempt table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

An image's scoring is recorded (committed) before its file is decoded and the row is deleted
with the write of its outcome, so a row left behind counts the starts that died while the image
was in flight; the scorer gives up on an image after a few (``library.scoring``). A new table:
nothing to backfill.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "score_attempt",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("model_set_id", sa.Integer(), nullable=False),
        sa.Column("image_version", sa.Integer(), nullable=False),
        sa.Column("started", sa.Integer(), nullable=False),
        sa.Column("last_run_id", sa.Integer(), nullable=True),
        sa.Column("last_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"]),
        sa.ForeignKeyConstraint(["last_run_id"], ["scoring_run.id"]),
        sa.ForeignKeyConstraint(["model_set_id"], ["model_set.id"]),
        sa.PrimaryKeyConstraint("image_id", "model_set_id"),
    )


def downgrade() -> None:
    op.drop_table("score_attempt")
