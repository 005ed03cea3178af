"""Shared helpers for the end-to-end tests: run the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

# fields that legitimately differ between a first run and a rerun from the cache
VOLATILE = ("cached", "cache_hits", "spent_usd", "call_log", "retries", "overrides")


def run_cli(
    cwd: Path,
    *overrides: str,
    check: bool = True,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    flags = [o for o in overrides if o.startswith("-")]
    rest = [o for o in overrides if not o.startswith("-")]
    proc = subprocess.run(
        [sys.executable, "-m", "cotfaith", *flags, "progress=false", *rest],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"cotfaith failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def load_records(run_dir: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / "records.jsonl").read_text().splitlines() if x]
    return rows


def comparable(rows: list[dict]) -> list[dict]:
    """Records without cache bookkeeping, in a canonical order."""
    out = [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]
    return sorted(out, key=lambda r: json.dumps(r, sort_keys=True))


def summary(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "summary.csv")
