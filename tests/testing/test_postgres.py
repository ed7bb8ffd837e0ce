"""Where nothing listens on 5432, tests and the sandbox build a throw-away cluster."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from justin_flows.db.migrate import upgrade
from justin_flows.testing.postgres import PostgresServer, ThrowawayCluster


def test_throwaway_cluster_serves_a_migrated_database_and_is_removed() -> None:
    cluster = ThrowawayCluster()
    server = PostgresServer(cluster.start(), cluster)
    try:
        url = server.create_database()
        upgrade(url)
        engine = create_engine(url)
        assert "jobs" in inspect(engine).get_table_names()
        engine.dispose()
        server.drop_database(url)
    finally:
        server.close()
    assert not cluster.root.exists()
