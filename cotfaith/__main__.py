"""`python -m cotfaith` is the same as the `cotfaith` command (which starts here too)."""

import os
import signal
import sys
from types import FrameType


def _interrupted_while_starting(signum: int, frame: FrameType | None) -> None:
    # Ctrl-C while importing Hydra, pandas and the SDKs, composing the config or checking it
    # (the first second or two): nothing is written yet, so end at once. Raising
    # KeyboardInterrupt instead would let it land inside a library's import, where some catch
    # it and fail later with their own error (Hydra: "Error locating target ..."), or where
    # CPython marks it unhandled even once caught (the process then ends by SIGINT, not 130).
    os.write(2, b"cotfaith: interrupted while starting; nothing was run\n")
    os._exit(130)


_interrupted_while_starting.cotfaith_starting = True  # type: ignore[attr-defined]
"""Marks the handler, so the run (cli.run) knows to hand Ctrl-C back to KeyboardInterrupt."""


def main() -> None:
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # (not when ignored)
        signal.signal(signal.SIGINT, _interrupted_while_starting)
    from cotfaith.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    sys.exit(main())
