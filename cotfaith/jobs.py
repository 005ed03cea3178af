"""The jobs of a multirun, seen from the process that launched them.

With the basic launcher every job runs in the launching process; with joblib or submitit each
runs in another process (or machine), and what a job says in memory never reaches the parent.
So a job that fails leaves `job_failed.json` in its folder, and the parent, which learns the
sweep folder from Hydra (`SweepJobs.on_multirun_start`), reads them once the sweep is over and
exits with the worst code. The same callback ends the start's instant Ctrl-C in the parent: from
then on Ctrl-C goes to the launcher, which stops its workers.
"""

from __future__ import annotations

import contextlib
import importlib
import json
from pathlib import Path
from typing import Any

from cotfaith import starting

JOB_FAILED = "job_failed.json"

SWEEPS: list[Path] = []
"""Sweep folders of this process's multiruns."""

IN_PROCESS: dict[str, int] = {}
"""Jobs that failed in this process (job -> exit code): what could not be written is still
counted (a folder that turned read-only)."""


def record_failure(out_dir: Path, job: str, code: int, message: str | None) -> None:
    IN_PROCESS[job] = code
    with contextlib.suppress(OSError):  # the failure may be the folder itself
        (out_dir / JOB_FAILED).write_text(
            json.dumps({"job": job, "exit_code": code, "error": message}) + "\n",
            encoding="utf-8",
        )


def clear_failure(out_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (out_dir / JOB_FAILED).unlink(missing_ok=True)


def failed() -> list[tuple[str, int]]:
    """(job, exit code) of every failed job of this process's sweeps, in job order."""
    found: dict[str, tuple[float, int]] = {}
    for sweep in SWEEPS:
        for marker in sweep.rglob(JOB_FAILED):
            try:
                data = json.loads(marker.read_text(encoding="utf-8"))
                found[str(data["job"])] = (_number(data["job"]), int(data["exit_code"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # (a job killed while writing it: its own log says more)
    for job, code in IN_PROCESS.items():
        found.setdefault(job, (_number(job), code))
    return [(job, code) for job, (_, code) in sorted(found.items(), key=lambda x: x[1][0])]


def _number(job: Any) -> float:
    """The N of "job N (...)", to list jobs in order (job 10 after job 9)."""
    parts = str(job).split()
    try:
        return float(parts[1])
    except (IndexError, ValueError):
        return float("inf")


try:
    from hydra.experimental.callback import Callback as _Callback
except ImportError:  # pragma: no cover - Hydra is a dependency
    _Callback = object  # type: ignore[misc,assignment]


class SweepJobs(_Callback):  # type: ignore[misc,valid-type]
    """conf/config.yaml `hydra.callbacks.sweep_jobs`: the parent of a multirun notes the sweep
    folder (where its jobs' failures are found) and hands Ctrl-C to the launcher."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        SWEEPS.append(Path(str(config.hydra.sweep.dir)))
        target = getattr(getattr(config.hydra, "launcher", None), "_target_", None)
        if isinstance(target, str) and "." in target:
            # the launcher's plugin imported while Ctrl-C still ends the process at once (an
            # import is where a KeyboardInterrupt breaks things); Hydra reports a bad target
            with contextlib.suppress(Exception):
                importlib.import_module(target.rpartition(".")[0])
        starting.end()
