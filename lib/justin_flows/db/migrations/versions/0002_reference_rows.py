"""reference rows upstream's schema ships: MONTECARLO storage (rse_id 1) and the AWT workflow (1)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

storages = sa.table(
    "storages",
    sa.column("rse_id", sa.Integer), sa.column("rse_name", sa.String), sa.column("occupancy", sa.Float),
    sa.column("decommissioned", sa.Boolean), sa.column("region", sa.String), sa.column("country", sa.String),
    sa.column("rucio_write", sa.Boolean), sa.column("rucio_read", sa.Boolean), sa.column("justin_write", sa.Boolean),
    sa.column("justin_read", sa.Boolean), sa.column("needs_pin", sa.Boolean),
    sa.column("lan_write_scheme", sa.String), sa.column("wan_write_scheme", sa.String),
)
workflows = sa.table(
    "workflows",
    sa.column("workflow_id", sa.Integer), sa.column("campaign_id", sa.Integer), sa.column("state", sa.String),
    sa.column("state_message", sa.Text), sa.column("mql", sa.Text), sa.column("refind_seconds", sa.Integer),
)


def upgrade() -> None:
    bind = op.get_bind()
    if not bind.execute(sa.text("SELECT 1 FROM storages WHERE rse_id = 1")).first():
        op.bulk_insert(storages, [{
            "rse_id": 1, "rse_name": "MONTECARLO", "occupancy": 1.0, "decommissioned": False, "region": "",
            "country": "", "rucio_write": False, "rucio_read": True, "justin_write": False, "justin_read": True,
            "needs_pin": False, "lan_write_scheme": "root", "wan_write_scheme": "root",
        }])
    if not bind.execute(sa.text("SELECT 1 FROM workflows WHERE workflow_id = 1")).first():
        op.bulk_insert(workflows, [{
            "workflow_id": 1, "campaign_id": 0, "state": "running", "mql": "", "refind_seconds": 0,
            "state_message": "automated test (AWT) jobs; never planned by the job factory",
        }])
    if bind.dialect.name == "postgresql":  # explicit ids do not advance PostgreSQL sequences
        for table, column in (("storages", "rse_id"), ("workflows", "workflow_id")):
            op.execute(  # table and column names are the fixed literals above
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "  # noqa: S608
                f"(SELECT GREATEST(MAX({column}), 1) FROM {table}))"
            )


def downgrade() -> None:
    op.execute("DELETE FROM workflows WHERE workflow_id = 1 AND mql = ''")
    op.execute("DELETE FROM storages WHERE rse_id = 1 AND rse_name = 'MONTECARLO'")
