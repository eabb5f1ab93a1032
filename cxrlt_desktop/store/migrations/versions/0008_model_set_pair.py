"""Progressive triage: the model_set_pair table (a fast model set's paper model set).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

A new table: nothing to backfill (no model set was scored progressively before).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_set_pair",
        sa.Column("fast_model_set_id", sa.Integer(), nullable=False),
        sa.Column("paper_model_set_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["fast_model_set_id"], ["model_set.id"]),
        sa.ForeignKeyConstraint(["paper_model_set_id"], ["model_set.id"]),
        sa.PrimaryKeyConstraint("fast_model_set_id", "paper_model_set_id"),
    )
    op.create_index(
        "ix_model_set_pair_paper_model_set_id", "model_set_pair", ["paper_model_set_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_model_set_pair_paper_model_set_id", table_name="model_set_pair")
    op.drop_table("model_set_pair")
