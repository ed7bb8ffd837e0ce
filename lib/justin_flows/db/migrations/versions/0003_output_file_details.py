"""output files: checksum, storage and storing time

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("adler32", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("output_rse_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("output_seconds", sa.Float(), nullable=True))
        batch.create_foreign_key(op.f("fk_files_output_rse_id_storages"), "storages", ["output_rse_id"], ["rse_id"])


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_constraint(op.f("fk_files_output_rse_id_storages"), type_="foreignkey")
        batch.drop_column("output_seconds")
        batch.drop_column("output_rse_id")
        batch.drop_column("adler32")
