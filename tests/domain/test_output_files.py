"""Output file names, discovery, adler32 and metadata (reference §5.2, §5.5): pure, no services."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from justin_flows.domain.output_files import (
    MetadataError,
    adler32_hex,
    adler32_of,
    check_file_pattern,
    did_name_problem,
    discover_output_files,
    name_problem,
    output_file_record,
    same_adler32,
    unsafe_name_problem,
)

# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        (".", "not a file name"),
        ("..", "not a file name"),
        ("a/b.root", "path separator"),
        ("a\0b.root", "NUL"),
        ("a\nb.root", "control character U+000A"),
        ("tab\t.root", "control character U+0009"),
        ("x" * 256, "256 bytes long, more than 255"),
        ("é" * 128, "256 bytes long, more than 255"),  # 128 characters, 256 UTF-8 bytes
        ("bad\udcff.root", "not valid UTF-8"),  # how os.listdir shows an undecodable byte
    ],
)
def test_unsafe_names_are_refused_with_the_reason(name: str, reason: str) -> None:
    problem = unsafe_name_problem(name)
    assert problem is not None and reason in problem


@pytest.mark.parametrize(
    "name",
    ["with space.root", "ünïcödé.root", "x;rm -rf ~.root", "$(touch pwned).root", "a`b`|c&d>e.root", "'quoted'.root"],
)
def test_spaces_unicode_and_shell_characters_are_safe_but_refused_by_rucios_did_rule(name: str) -> None:
    """No shell ever sees a name, so these are not unsafe; Rucio's DID policy still refuses them,
    so they are refused before anything is declared (the real server says InvalidObject)."""
    assert unsafe_name_problem(name) is None
    problem = did_name_problem(name)
    assert problem is not None and "Rucio's DID name rule" in problem
    assert name_problem(name) == problem


def test_rucio_limits_names_to_250_characters() -> None:
    assert name_problem("a" * 250) is None
    problem = name_problem("a" * 251)
    assert problem is not None and "251 characters long; Rucio allows at most 250" in problem


@pytest.mark.parametrize("name", ["ok.root", "A-b_c.1.root", "0start.root", "x"])
def test_ordinary_names_pass(name: str) -> None:
    assert name_problem(name) is None


def test_a_name_must_start_with_a_letter_or_digit() -> None:
    assert name_problem("-dash.root") is not None
    assert name_problem("_under.root") is not None


@pytest.mark.parametrize("pattern", ["/etc/*", "../*.root", "a/../../b", "x\0", "a\nb", ""])
def test_patterns_that_could_leave_the_workspace_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        check_file_pattern(pattern)


def test_patterns_inside_the_workspace_are_kept() -> None:
    assert check_file_pattern("sub/*.root") == "sub/*.root"
    assert check_file_pattern("*.r[oa]ot") == "*.r[oa]ot"


# --------------------------------------------------------------------------- discovery


def test_discovery_in_pattern_then_name_order_first_pattern_wins(tmp_path: Path) -> None:
    for name in ("b.root", "a.root", "c.hist.root", "notes.txt"):
        (tmp_path / name).write_bytes(name.encode())
    found = discover_output_files(tmp_path, [(1, "*.hist.root"), (2, "*.root")])
    assert [(f.name, f.pattern_id, f.size) for f in found.files] == [
        ("c.hist.root", 1, 11), ("a.root", 2, 6), ("b.root", 2, 6),
    ]
    assert found.refused == ()
    assert found.files[0].path == tmp_path / "c.hist.root"


def test_discovery_refuses_links_directories_bad_names_and_duplicate_names(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "good.root").write_text("x")
    (tmp_path / "sub" / "good.root").write_text("y")
    (tmp_path / "dir.root").mkdir()
    os.symlink("/etc/passwd", tmp_path / "link.root")
    (tmp_path / "with space.root").write_text("z")
    (tmp_path / "new\nline.root").write_text("z")
    long_name = "L" * 250 + ".root"  # 255 bytes: as long as a name on disk can be
    (tmp_path / long_name).write_text("z")
    found = discover_output_files(tmp_path, [(1, "*.root"), (2, "sub/*.root")])
    assert [f.name for f in found.files] == ["good.root"]
    reasons = {(r.name, r.pattern_id): r.reason for r in found.refused}
    assert "symbolic link" in reasons[("link.root", 1)]
    assert "not a regular file" in reasons[("dir.root", 1)]
    assert "Rucio's DID name rule" in reasons[("with space.root", 1)]
    assert "control character U+000A" in reasons[("new\nline.root", 1)]
    assert "255 characters long; Rucio allows at most 250" in reasons[(long_name, 1)]
    assert "good.root already has this name" in reasons[("good.root", 2)]
    assert len(found.refused) == 6


def test_hidden_files_are_not_matched_as_upstream_glob(tmp_path: Path) -> None:
    (tmp_path / ".hidden.root").write_text("x")
    assert discover_output_files(tmp_path, [(1, "*.root")]).files == ()


# --------------------------------------------------------------------------- adler32


def test_adler32_is_eight_lower_case_hex_digits_over_chunks(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 + 17)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert adler32_of(path, chunk_bytes=1000) == "%08x" % zlib.adler32(data)
    assert adler32_hex(0x1) == "00000001"
    (tmp_path / "empty").write_bytes(b"")
    assert adler32_of(tmp_path / "empty") == "00000001"


def test_same_adler32_ignores_leading_zeros_and_case() -> None:
    assert same_adler32("0000abcd", "abcd")
    assert same_adler32("0A1B2C3D", "0a1b2c3d")
    assert not same_adler32("0a1b2c3d", "0a1b2c3e")
    assert not same_adler32(None, "0a1b2c3d")


# --------------------------------------------------------------------------- metadata

WORKFLOW = {"workflow_id": 7, "stage_id": 1, "job_id": "1.0@s", "site_name": "UK_X", "user": None}


def test_metadata_merge_lower_cases_user_keys_and_adds_justins_fields() -> None:
    record = output_file_record(
        {"metadata": {"Core.Run": 5, "DUNE.output_status": "mine", "dune.workflow": {"x": 1}},
         "parents": [{"did": "ns:p1"}, "fid123"]},
        workflow=WORKFLOW,
    )
    assert record.metadata == {
        "core.run": 5,
        "dune.output_status": "recorded",
        "dune.workflow": {"site_name": "UK_X", "workflow_id": 7, "stage_id": 1, "job_id": "1.0@s"},
    }
    assert record.parents == [{"did": "ns:p1"}, "fid123"]


def test_no_user_file_gives_justins_fields_only() -> None:
    record = output_file_record(None, workflow=WORKFLOW)
    assert set(record.metadata) == {"dune.workflow", "dune.output_status"}
    assert record.parents == []


@pytest.mark.parametrize(
    ("user_json", "message"),
    [
        ([1, 2], "must hold a JSON object"),
        ({"metadata": []}, "'metadata' in the metadata file must be a JSON object"),
        ({"metadata": {"Core.run": 1, "core.RUN": 2}}, "differ only in case"),
        ({"metadata": {"run": 1}}, "has no category"),
        ({"parents": "ns:p"}, "'parents' in the metadata file must be a list"),
        ({"parents": [{"size": 1}]}, "must be a file id"),
    ],
)
def test_unusable_metadata_is_refused_clearly(user_json: object, message: str) -> None:
    with pytest.raises(MetadataError, match=message):
        output_file_record(user_json, workflow=WORKFLOW)
