"""Running a fake: in a background thread (unit tests) or as a separate process (kill tests)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from .common import STATE, ServerState

HOST = "127.0.0.1"
# stdlib HTTP without proxies: a proxy from the environment must never see loopback traffic
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _get_json(url: str, method: str = "GET") -> dict[str, Any]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with _OPENER.open(req, timeout=10) as r:
        return json.loads(r.read())


class _Urls:
    """URL helpers shared by the thread and process runners."""

    port: int

    @property
    def root_url(self) -> str:
        """Base URL without /v1 (what AsyncAnthropic wants)."""
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """Base URL with /v1 (what AsyncOpenAI wants)."""
        return f"{self.root_url}/v1"

    def stats(self) -> dict[str, Any]:
        """The server's counters (GET /_stats)."""
        return _get_json(f"{self.root_url}/_stats")

    def reset(self) -> None:
        """Zero the server's counters (POST /_reset)."""
        _get_json(f"{self.root_url}/_reset", method="POST")


async def start_site(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    """Start `app` on 127.0.0.1:port (0 = any free port); return the runner and the real port."""
    # no access log: it costs CPU in benchmarks and is one more place a secret could leak;
    # handler_cancellation: a client that gives up cancels its handler (a stall then ends
    # uncounted), and shutdown does not wait for stalled handlers
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    await site.start()
    return runner, runner.addresses[0][1]


class ServerThread(_Urls):
    """A fake server on its own event loop in a daemon thread; use as a context manager."""

    def __init__(self, app: web.Application, startup_timeout: float = 10.0):
        self.app = app
        self.port = 0
        self._startup_timeout = startup_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def state(self) -> ServerState:
        """The live configuration and counters; assign e.g. `state.faults` to change them."""
        return self.app[STATE]

    def __enter__(self) -> ServerThread:
        self._thread = threading.Thread(target=self._run, name="fakeapi", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._startup_timeout):
            raise RuntimeError("fake API server did not start in time")
        if self._error is not None:
            raise RuntimeError(f"fake API server failed to start: {self._error}") from self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            runner, self.port = loop.run_until_complete(start_site(self.app))
        except BaseException as e:  # reported to the starting thread, which raises it
            self._error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()


class ServerProcess(_Urls):
    """`python -m tests.fakeapi ...` as a child process, for tests that SIGKILL things.

    `args` are the CLI flags (see `python -m tests.fakeapi --help`); the key is passed through
    the FAKEAPI_KEY environment variable so it does not show in process listings.
    """

    def __init__(self, *args: str, key: str, startup_timeout: float = 30.0):
        self.args = args
        self.port = 0
        self._key = key
        self._startup_timeout = startup_timeout
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ServerProcess:
        env = {**os.environ, "FAKEAPI_KEY": self._key}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakeapi", *self.args],
            cwd=_PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = _readline(self.proc, self._startup_timeout)
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"fake API process did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """First stdout line of `proc`, or "" after `timeout` seconds or when it exits."""
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    t.start()
    t.join(timeout)
    return out[0].strip() if out else ""
