"""`cotfaith`: the Hydra entry point. `cotfaith --help` lists the config groups."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from cotfaith.budget import BudgetExceeded
from cotfaith.config import register_configs
from cotfaith.errors import CotfaithError
from cotfaith.report import ReportSettings, write_report
from cotfaith.runner import RunResult, run_async

log = logging.getLogger("cotfaith")

try:
    register_configs()
    _SETUP_ERROR: CotfaithError | None = None
except CotfaithError as _e:  # a broken plugin: said in one line when the command runs
    _SETUP_ERROR = _e
# conf/ sits beside the package in the source tree (editable install).
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def _report(cfg: DictConfig, out_dir: Path) -> Path:
    return write_report(out_dir, ReportSettings.from_mapping(cfg.report)).report


def _print_dry_run(result: RunResult) -> None:
    d = result.dry_run or {}

    def usd(v: float | None) -> str:
        return "unknown (no price in conf/prices)" if v is None else f"${v:,.4f}"

    print(
        f"dry run: {result.calls} requests, {d['calls_to_make']} calls to make (the rest are "
        f"cached or repeats), ~{d['est_input_tokens']:,} input and "
        f"~{d['est_output_tokens']:,} output tokens; estimated cost {usd(d['est_cost_usd'])}, "
        f"or {usd(d['worst_case_cost_usd'])} if every call used all its max_tokens (calls per "
        "CoT follow the simulated model's CoT lengths; longer real CoTs cost more) "
        f"(details in {result.out_dir / 'dry_run.json'})"
    )


# the HTTP clients log every request at INFO: too much for a run of thousands of calls
for _name in ("httpx", "httpx2", "openai", "anthropic", "aiohttp"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def run(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    launch_dir = Path(hc.runtime.cwd)
    try:
        result = asyncio.run(run_async(cfg, out_dir, launch_dir))
    except BudgetExceeded:
        if (out_dir / "records.jsonl").exists() and (out_dir / "records.jsonl").stat().st_size:
            log.info("budget reached: report of the finished records: %s", _report(cfg, out_dir))
        raise
    if result.dry_run is not None:
        _print_dry_run(result)
        return
    log.info(
        "%d records from %d model calls (%d served from the cache, %d retries, %d failed) "
        "in %.1f s; spent $%.4f",
        result.records,
        result.calls,
        result.cache_hits,
        result.retries,
        result.failed_calls,
        result.seconds,
        result.spent_usd,
    )
    if result.failed_calls:
        log.warning(
            "%d calls failed after every retry; they are recorded as call_failed, "
            "were not cached, and will be retried by running again",
            result.failed_calls,
        )
    log.info("results in %s (report: %s)", out_dir, _report(cfg, out_dir))


def main() -> None:
    if _SETUP_ERROR is not None:
        print(f"cotfaith: error: {_SETUP_ERROR}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except MissingMandatoryValue as e:
        print(
            f"cotfaith: error: {e.full_key} is required (set it: {e.full_key}=...)", file=sys.stderr
        )
        sys.exit(2)
    except CotfaithError as e:
        # an actionable problem: one clear line on stderr, no traceback
        print(f"cotfaith: error: {e}", file=sys.stderr)
        sys.exit(3 if isinstance(e, BudgetExceeded) else 2)


__all__ = ["main", "CONFIG_DIR"]
