"""Shared fixtures: where the real benchmark files are, and a guard that keeps task loaders off
the internet."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA_ENV = "COTFAITH_SHARED_DATA"
TASK_FIXTURES = Path(__file__).parent / "data" / "tasks"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The published benchmark files (../shared/data beside the repository, or
    $COTFAITH_SHARED_DATA)."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    path = Path(os.environ.get(SHARED_DATA_ENV) or default)
    if not (path / "SOURCES.tsv").is_file():
        pytest.fail(
            f"benchmark data not found at {path}: clone shared/ beside the repository or "
            f"set {SHARED_DATA_ENV}"
        )
    return path


@pytest.fixture
def no_download(tmp_path, monkeypatch) -> Path:
    """Downloads go to an empty folder from a closed loopback port: never the internet."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("COTFAITH_DATA_URL", "http://127.0.0.1:9")
    return tmp_path / "xdg-cache" / "cotfaith" / "data"
