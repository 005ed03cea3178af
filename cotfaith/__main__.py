"""`python -m cotfaith` is the same as the `cotfaith` command (which starts here too)."""

import sys


def main() -> None:
    try:  # importing Hydra, pandas and the SDKs takes a second or two: Ctrl-C may come then
        from cotfaith.cli import main as cli_main
    except KeyboardInterrupt:
        print("cotfaith: interrupted while starting; nothing was run", file=sys.stderr)
        sys.exit(130)
    cli_main()


if __name__ == "__main__":
    main()
