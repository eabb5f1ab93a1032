"""DICOM node: the dicom_send table (results sent to a PACS destination).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

A new table: nothing to backfill.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dicom_send",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("what", sa.String(length=32), nullable=False),
        sa.Column("destination", sa.String(length=128), nullable=False),
        sa.Column("sop_uid", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"]),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dicom_send_image_id", "dicom_send", ["image_id"])
    op.create_index("ix_dicom_send_study_id", "dicom_send", ["study_id"])


def downgrade() -> None:
    op.drop_index("ix_dicom_send_study_id", table_name="dicom_send")
    op.drop_index("ix_dicom_send_image_id", table_name="dicom_send")
    op.drop_table("dicom_send")
