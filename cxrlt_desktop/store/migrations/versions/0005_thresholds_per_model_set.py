"""Operating thresholds per model set: the model_set_threshold table; the library's triage
options: the library_setting table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

A threshold belongs to one model version. Existing libraries keep the thresholds they use:
they lived in the settings file, which a migration cannot read, so the application copies them
to the current model set the first time it opens such a library (``source = "migrated"``).
``library_setting`` holds options that decide the stored triage columns (``flag_for_processing``),
absent until first set (absent: the default).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_set_threshold",
        sa.Column("model_set_id", sa.Integer(), nullable=False),
        sa.Column("finding", sa.String(length=64), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=512), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["model_set_id"], ["model_set.id"]),
        sa.PrimaryKeyConstraint("model_set_id", "finding"),
    )
    op.create_table(
        "library_setting",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("library_setting")
    op.drop_table("model_set_threshold")
