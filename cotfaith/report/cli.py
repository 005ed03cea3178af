"""`cotfaith-report RUN_DIR [...]`: rebuild summary, figures and report from a run's records."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cotfaith.report import ReportSettings, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cotfaith-report", description=__doc__)
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run folders (with records.jsonl)")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    status = 0
    for run_dir in args.run_dirs:
        try:
            paths = write_report(
                run_dir, ReportSettings(n_bootstrap=args.n_bootstrap, seed=args.seed)
            )
        except (FileNotFoundError, ValueError) as e:
            print(f"cotfaith-report: error: {e}", file=sys.stderr)
            status = 1
            continue
        print(f"{run_dir}: {paths.report}")
    return status


if __name__ == "__main__":
    sys.exit(main())
