"""Fixtures of the integration tests (helpers importable by name are the modules beside it)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def log_path(tmp_path: Path) -> Iterator[Path]:
    """Where a service process started by the test writes its output; its tail is printed
    at the end, so pytest shows what the service said when the test failed."""
    path = tmp_path / "service.log"
    yield path
    if path.exists():
        sys.stdout.write(path.read_text(errors="replace")[-20_000:])
