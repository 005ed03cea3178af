"""`cotfaith-report RUN_DIR [...]`: rebuild summary, figures and report from a run's records.

The run's own `report:` settings (from its .hydra/config.yaml) are the defaults, so a rebuilt
report matches the one the run wrote; flags override them.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import yaml

from cotfaith.report import ReportSettings, write_report


def run_settings(run_dir: Path) -> ReportSettings:
    path = run_dir / ".hydra" / "config.yaml"
    saved = {}
    if path.exists():
        saved = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("report") or {}
    return ReportSettings.from_mapping(saved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cotfaith-report", description=__doc__)
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run folders (with records.jsonl)")
    parser.add_argument("--n-bootstrap", type=int, help="bootstrap resamples (run's setting)")
    parser.add_argument("--ci", type=float, help="confidence level (run's setting)")
    parser.add_argument("--seed", type=int, help="bootstrap seed (run's setting)")
    args = parser.parse_args(argv)
    status = 0
    for run_dir in args.run_dirs:
        settings = run_settings(run_dir)
        for flag, field in (("n_bootstrap", "n_bootstrap"), ("ci", "ci"), ("seed", "seed")):
            if getattr(args, flag) is not None:
                settings = dataclasses.replace(settings, **{field: getattr(args, flag)})
        try:
            paths = write_report(run_dir, settings)
        except (FileNotFoundError, ValueError) as e:
            print(f"cotfaith-report: error: {e}", file=sys.stderr)
            status = 1
            continue
        print(f"{run_dir}: {paths.report}")
    return status


if __name__ == "__main__":
    sys.exit(main())
