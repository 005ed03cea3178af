"""Ctrl-C while cotfaith starts: importing Hydra, pandas and the SDKs, composing the config and
checking it (the first second or two). Nothing is written yet, so the process ends at once with
one line and 130. Raising KeyboardInterrupt there instead lets it land inside a library's
import, where some catch it and fail later with their own error (Hydra: "Error locating
target", exit 1), or where CPython marks it unhandled even once caught (the process then ends
by SIGINT, not 130).

`install` runs first thing in `cotfaith.__main__`; `end` hands Ctrl-C back to KeyboardInterrupt
once there is something to keep: a run (cli.run) or a sweep (the parent of a multirun, which
stops its launcher's workers; cotfaith.jobs). Standard library only: it must import in no time.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

MESSAGE = b"cotfaith: interrupted while starting; nothing was run\n"


def _interrupted(signum: int, frame: FrameType | None) -> None:
    try:
        os.write(2, MESSAGE)
    except OSError:  # stderr is a closed pipe: exit all the same
        pass
    os._exit(130)


def install() -> Any:
    """Take Ctrl-C for the start (unless it is ignored, as in a background job); returns the
    handler it replaced, for `restore`."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted)
    return previous


def end() -> None:
    """From here on, Ctrl-C is a KeyboardInterrupt the run or the launcher handles."""
    if threading.current_thread() is not threading.main_thread():
        return  # (signals belong to the main thread; a run in a thread never installed it)
    if signal.getsignal(signal.SIGINT) is _interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def restore(previous: Any) -> None:
    """Put back what `install` replaced (an in-process caller of the command's main)."""
    if threading.current_thread() is threading.main_thread() and previous is not None:
        if signal.getsignal(signal.SIGINT) is _interrupted:
            signal.signal(signal.SIGINT, previous)
