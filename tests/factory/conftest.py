"""Fixtures of the job-factory tests: the results database and the condor_submit stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.factory.helpers import Condor, add_awt_workflow, condor_standin


@pytest.fixture
def condor(db: Engine, tmp_path: Path) -> Iterator[Condor]:
    """An emptied database (but for the AWT workflow 1) and condor_submit stand-ins."""
    with condor_standin(tmp_path) as harness:
        add_awt_workflow()
        yield harness
