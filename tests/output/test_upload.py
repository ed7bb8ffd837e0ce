"""``RucioAdapter.upload`` (UploadClient, tracing off) on the real Rucio server with posix RSEs."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from rucio.client import Client

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.ledger import LEDGER
from justin_flows.testing.rucio_server import RucioServer
from tests.rucio_seed import add_rse, add_scope, unique


@pytest.fixture
def client(rucio_server: RucioServer) -> Client:
    client = Client()
    add_scope(client, "root", "uploadtests")
    return client


def attempts() -> list[tuple[int, str, str | None]]:
    return [(r.attempt, r.outcome, r.error) for r in LEDGER.snapshot() if r.operation == "upload"]


def test_upload_lands_the_bytes_and_a_reupload_is_already_present(client: Client, tmp_path: Path) -> None:
    rse = add_rse(client, unique("UP_").upper(), tmp_path / "rse", protocols=[("file", 1, 1)], limits={"root": -1})
    dataset = unique("ds")
    client.add_dataset("uploadtests", dataset)
    path = tmp_path / unique("f")
    path.write_bytes(b"payload")
    rucio = RucioAdapter()
    LEDGER.drain()
    kwargs = dict(rse=rse, scope="uploadtests", name=path.name, dataset_scope="uploadtests", dataset_name=dataset,
                  scheme="file")
    assert rucio.upload(path, **kwargs) == "uploaded"  # type: ignore[arg-type]
    assert rucio.upload(path, **kwargs) == "already-present"  # type: ignore[arg-type]  # NoFilesUploaded inside
    assert attempts() == [(1, "ok", None), (1, "ok", None)]
    [replica] = client.list_replicas([{"scope": "uploadtests", "name": path.name}])
    assert Path(urlsplit(replica["rses"][rse][0]).path).read_bytes() == b"payload"
    assert [c["name"] for c in client.list_content("uploadtests", dataset)] == [path.name]


def test_a_write_blocked_rse_is_final_at_once(client: Client, tmp_path: Path) -> None:
    rse = add_rse(client, unique("BLK_").upper(), tmp_path / "rse", protocols=[("file", 1, 1)], limits={"root": -1})
    client.update_rse(rse, {"availability_write": False})
    client.add_dataset("uploadtests", dataset := unique("ds"))
    path = tmp_path / unique("f")
    path.write_bytes(b"x")
    LEDGER.drain()
    with pytest.raises(ExternalCallError) as caught:
        RucioAdapter().upload(path, rse=rse, scope="uploadtests", name=path.name, dataset_scope="uploadtests",
                              dataset_name=dataset, scheme="file")
    assert type(caught.value.cause).__name__ == "RSEWriteBlocked"
    assert [a[:2] for a in attempts()] == [(1, "error")]


def test_a_failed_transfer_is_tried_three_times_with_its_reason(client: Client, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("the RSE's prefix lies under a regular file, so every write fails")
    rse = add_rse(client, unique("BAD_").upper(), blocker / "rse", protocols=[("file", 1, 1)], limits={"root": -1})
    client.add_dataset("uploadtests", dataset := unique("ds"))
    path = tmp_path / unique("f")
    path.write_bytes(b"x")
    LEDGER.drain()
    with pytest.raises(ExternalCallError) as caught:
        RucioAdapter().upload(path, rse=rse, scope="uploadtests", name=path.name, dataset_scope="uploadtests",
                              dataset_name=dataset, scheme="file")
    assert type(caught.value.cause).__name__ == "NoFilesUploaded"
    assert [a[:2] for a in attempts()] == [(1, "error"), (2, "error"), (3, "error")]
    assert all("NoFilesUploaded" in (a[2] or "") for a in attempts())
    assert "Details:" in str(caught.value)  # the upload client's own reason, not just "none uploaded"
