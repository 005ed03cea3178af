"""`cotfaith-report DIR [...]`: rebuild summary, figures and report from a run's records.

The run's own `report:` settings (from its .hydra/config.yaml) are the defaults, so a rebuilt
report matches the one the run wrote; flags override them. A multirun folder (Hydra's
multirun.yaml, or job subfolders) gets one report over all its jobs (cotfaith.report.sweep):
sweep_summary.csv, sweep_jobs.csv, sweep_comparisons.csv, figures/ and report.html.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import yaml

from cotfaith.report import ReportSettings, write_report
from cotfaith.report.sweep import is_multirun, write_sweep_report


def run_settings(run_dir: Path) -> ReportSettings:
    path = run_dir / ".hydra" / "config.yaml"
    saved = {}
    if path.exists():
        saved = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("report") or {}
    return ReportSettings.from_mapping(saved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cotfaith-report", description=__doc__)
    parser.add_argument(
        "run_dirs", nargs="+", type=Path, help="run folders (records.jsonl) or multirun folders"
    )
    parser.add_argument("--n-bootstrap", type=int, help="bootstrap resamples (run's setting)")
    parser.add_argument("--ci", type=float, help="confidence level (run's setting)")
    parser.add_argument("--seed", type=int, help="bootstrap seed (run's setting)")
    sweep = parser.add_argument_group("multirun folders")
    sweep.add_argument(
        "--sizes",
        help="model sizes in billions of parameters: a YAML file of name: size, or "
        "name=7B,other=70B (default: model.size in a job's config, else the model's name)",
    )
    sweep.add_argument(
        "--compare",
        default="auto",
        choices=("auto", "all", "baseline", "adjacent", "none"),
        help="which jobs to compare pairwise: all pairs, each against the first job, "
        "neighbours, none (auto: all up to 6 jobs, else baseline)",
    )
    sweep.add_argument(
        "--adjust",
        default="holm",
        choices=("holm", "bh"),
        help="p-value adjustment across the comparisons: Holm or Benjamini-Hochberg",
    )
    args = parser.parse_args(argv)
    status = 0
    for run_dir in args.run_dirs:
        if not (run_dir / "records.jsonl").exists() and is_multirun(run_dir):
            try:
                paths = write_sweep_report(
                    run_dir,
                    n_bootstrap=args.n_bootstrap,
                    ci=args.ci,
                    seed=args.seed,
                    sizes=args.sizes,
                    compare=args.compare,
                    adjust=args.adjust,
                )
            except (FileNotFoundError, ValueError, OSError) as e:
                print(f"cotfaith-report: error: {e}", file=sys.stderr)
                status = 1
                continue
            print(f"{run_dir}: {paths.report}")
            continue
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
