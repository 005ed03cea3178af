"""`python -m cotfaith` is the same as the `cotfaith` command (which starts here too)."""

import sys

from cotfaith import starting


def main() -> None:
    previous = starting.install()  # before the imports: Ctrl-C may come during them
    try:
        from cotfaith.cli import main as cli_main

        cli_main()
    finally:
        starting.restore(previous)


if __name__ == "__main__":
    sys.exit(main())
