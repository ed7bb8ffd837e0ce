"""The one way tests reach ``../shared`` (reference fixtures that are never committed here).

A user's clone has no ``../shared``: tests that need it skip and say why, while the
project's own synthetic fixtures under ``tests/fixtures/`` cover the same logic.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("JUSTIN_SHARED_DIR", REPO_ROOT.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """Path inside ``../shared``, or skip the calling test when it is absent."""
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: reference fixtures live only beside the project's own clone")
    return path
