"""`cotfaith`: the Hydra entry point. `cotfaith --help` lists the config groups."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cotfaith.config import register_configs
from cotfaith.errors import CotfaithError
from cotfaith.report import ReportSettings, write_report
from cotfaith.runner import run_async

log = logging.getLogger("cotfaith")

register_configs()
# conf/ sits beside the package in the source tree (editable install).
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def run(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    launch_dir = Path(hc.runtime.cwd)
    result = asyncio.run(run_async(cfg, out_dir, launch_dir))
    log.info(
        "%d records from %d model calls (%d served from the cache) in %.1f s",
        result.records,
        result.calls,
        result.cache_hits,
        result.seconds,
    )
    r = cfg.report
    paths = write_report(
        out_dir,
        ReportSettings(
            n_bootstrap=r.n_bootstrap,
            ci=r.ci,
            seed=r.seed,
            min_cots_per_length=r.min_cots_per_length,
            n_examples=r.n_examples,
        ),
    )
    log.info("results in %s (report: %s)", out_dir, paths.report)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except CotfaithError as e:
        # an actionable problem: one clear line on stderr, no traceback
        print(f"cotfaith: error: {e}", file=sys.stderr)
        sys.exit(2)
