"""What every table of the bad-inputs corpus shares: the checks of an outcome, and a pool that
runs a table's command-line cases side by side (each `cotfaith` start costs seconds of CPU, so
the cases of a table run at once, each test waiting for its own).

A row says the input, how it is applied, and the expected outcome: an exit code and a
substring of the one `cotfaith: error:` line (or of the in-process one-line error), or the
status a run records.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ERROR = "cotfaith: error:"
EXIT_OK, EXIT_CONFIG, EXIT_BUDGET, EXIT_FAILED_CALLS, EXIT_INTERRUPTED = 0, 2, 3, 4, 130

TINY = ("progress=false", "task.n_questions=2", "sampling.n_samples=1", "intervention=[no_cot]")
"""The smallest run that still writes every file (records, report)."""


def one_line(text: str) -> str:
    """`text` is one line without a traceback; returns it."""
    assert "Traceback" not in text, text
    assert "\n" not in text.strip(), text
    return text


def compose(*overrides: str) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from cotfaith.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def unwritable_system_folder() -> Path | None:
    """A folder even root cannot write in (sysfs), where there is one: a real failure."""
    import tempfile

    folder = Path("/sys")
    if not folder.is_dir():
        return None
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None  # writable here: no such folder on this machine
    except OSError:
        return folder


@dataclass
class Cli:
    """One command-line case: arguments, environment, and how the process is started."""

    id: str
    args: tuple[str, ...]
    code: int
    """Expected exit code."""
    expect: tuple[str, ...] = ()
    """Substrings of the one error line (code != 0), or of stderr (code 0)."""
    env: dict[str, str | None] = field(default_factory=dict)
    """Set (None: unset) on top of the test's environment; "{tmp}" is the case's folder."""
    setup: Callable[[Path], None] | None = None
    """Prepares the case's folder (files the arguments name)."""
    preexec: Callable[[], None] | None = None
    """Runs in the child before exec (resource limits, a closed stdin)."""
    cwd: str | None = None
    """Launch folder ("{tmp}" by default)."""
    skip: Callable[[], str | None] | None = None
    """Why this case cannot run here (None: it can)."""
    xfail: str | None = None
    """A known defect outside this corpus's files (strict: the test fails once it is fixed)."""
    after: Callable[[Path, subprocess.CompletedProcess[str]], None] | None = None
    """Further checks of what the run left behind."""
    lines: int = 1
    """Error lines on failure: one, or in a sweep one per failed job and the summary (the
    expected substrings are then looked for in the last)."""

    def __str__(self) -> str:
        return self.id


def start(case: Cli, folder: Path) -> subprocess.CompletedProcess[str]:
    folder.mkdir(parents=True, exist_ok=True)
    if case.setup is not None:
        case.setup(folder)
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "XDG_CACHE_HOME": str(folder / "xdg")}
    env["COTFAITH_DATA_URL"] = "http://127.0.0.1:9"  # never the internet
    for key, value in case.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value.replace("{tmp}", str(folder))
    cwd = (case.cwd or "{tmp}").replace("{tmp}", str(folder))
    args = [a.replace("{tmp}", str(folder)) for a in case.args]
    return subprocess.run(
        [sys.executable, "-m", "cotfaith", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        preexec_fn=case.preexec,
        stdin=subprocess.DEVNULL,
    )


def check(case: Cli, proc: subprocess.CompletedProcess[str]) -> None:
    """No traceback anywhere, the exit code, and on failure exactly one error line that holds
    every expected substring."""
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out[-3000:]
    assert proc.returncode == case.code, f"exit {proc.returncode}, expected {case.code}:\n{out}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith(ERROR)]
    if case.code == EXIT_OK:
        assert errors == [], errors
        for text in case.expect:
            assert text in proc.stderr, proc.stderr[-3000:]
        return
    assert len(errors) == case.lines, proc.stderr[-3000:]
    for text in case.expect:
        assert text in errors[-1], errors[-1]


class Pool:
    """Starts every collected case of one table at once (threads waiting on processes), so a
    table costs about its slowest case, not the sum."""

    def __init__(self, cases: list[Cli], workers: int | None = None):
        self.cases = {c.id: c for c in cases}
        self.workers = workers or max(2, 2 * (os.cpu_count() or 1))
        self.futures: dict[str, Future[subprocess.CompletedProcess[str]]] = {}
        self.lock = threading.Lock()
        self.executor: ThreadPoolExecutor | None = None

    def submit(self, ids: list[str], base: Path) -> None:
        with self.lock:
            if self.executor is None:
                self.executor = ThreadPoolExecutor(self.workers)
            for cid in ids:
                case = self.cases[cid]
                if cid in self.futures or (case.skip and case.skip()):
                    continue
                self.futures[cid] = self.executor.submit(start, case, base / _safe(cid))

    def result(self, cid: str, base: Path) -> subprocess.CompletedProcess[str]:
        self.submit([cid], base)
        return self.futures[cid].result()

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def pool_fixture(cases: list[Cli], test_name: str):
    """A module-scoped fixture: the pool of `cases`, with every case collected for the test
    function `test_name` started at once."""

    @pytest.fixture(scope="module")
    def _pool(request, tmp_path_factory):
        pool = Pool(cases)
        base = tmp_path_factory.mktemp(test_name)
        wanted = [
            item.callspec.params["case"].id
            for item in request.session.items
            if getattr(item, "originalname", None) == test_name
            and item.module is request.module
            and hasattr(item, "callspec")
        ]
        pool.submit(wanted, base)
        yield pool, base
        pool.close()

    return _pool


def run_case(case: Cli, pool_and_base: tuple[Pool, Path]) -> None:
    """The body of every command-line test: skip, run (from the pool), check."""
    reason = case.skip() if case.skip else None
    if reason:
        pytest.skip(reason)
    pool, base = pool_and_base
    proc = pool.result(case.id, base)
    check(case, proc)
    if case.after is not None:
        case.after(base / _safe(case.id), proc)


def params(cases: list[Cli]) -> list[Any]:
    return [
        pytest.param(
            c,
            id=c.id,
            marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else [],
        )
        for c in cases
    ]
