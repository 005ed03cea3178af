"""Shared fixtures: where the real benchmark files are, and a guard that keeps task loaders off
the internet. And the order files are handed to the xdist workers: longest first."""

from __future__ import annotations

import json
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


DURATIONS = Path(__file__).parent / "durations.json"
"""Seconds each test file took (`pytest --store-durations` rewrites it). Only the order of the
files depends on it: a stale or missing file costs time, never a test."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store-durations",
        action="store_true",
        help=f"write each test file's seconds to {DURATIONS.name} (files then start longest first)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # xdist hands whole files to the workers in collection order: a long file collected last
    # (alphabetically) left one worker running alone for minutes at the end
    try:
        known: dict[str, float] = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return
    new = max(known.values(), default=0.0)  # a file not measured yet starts early
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        first.setdefault(_file(item.nodeid), i)
    # stable: a file's tests keep their order
    items.sort(key=lambda it: (-known.get(_file(it.nodeid), new), first[_file(it.nodeid)]))


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


_SPENT: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _SPENT[_file(report.nodeid)] = _SPENT.get(_file(report.nodeid), 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # the controller sees every worker's reports; a worker (workerinput) sees only its own.
    # Files this session did not run keep their old figure (a run of one file, -k, -x).
    config = session.config
    if not config.getoption("--store-durations") or hasattr(config, "workerinput"):
        return
    if not _SPENT or exitstatus == pytest.ExitCode.INTERRUPTED:
        return
    try:
        known = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        known = {}
    spent = {**known, **{name: round(seconds, 1) for name, seconds in _SPENT.items()}}
    # whole or not at all: workers of another session read it while collecting
    partial = DURATIONS.with_suffix(".tmp")
    partial.write_text(json.dumps(dict(sorted(spent.items())), indent=1) + "\n")
    os.replace(partial, DURATIONS)
