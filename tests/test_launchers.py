"""Sweeps through the optional launchers (joblib: local processes; submitit: local or SLURM)
give exactly the records of the basic launcher, and their jobs' log lines carry the job number.
Skipped, saying why, where a plugin is not installed (pip install "cotfaith[joblib,slurm]")."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from cotfaith import cli
from cotfaith.cli import CONFIG_DIR, check_overrides
from cotfaith.errors import ConfigError
from tests.helpers import comparable, load_records, run_cli

HAS_JOBLIB = importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is not None
HAS_SUBMITIT = importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None
needs_joblib = pytest.mark.skipif(
    not HAS_JOBLIB, reason="hydra-joblib-launcher not installed: pip install 'cotfaith[joblib]'"
)
needs_submitit = pytest.mark.skipif(
    not HAS_SUBMITIT,
    reason="hydra-submitit-launcher not installed: pip install 'cotfaith[slurm]'",
)
# two tiny jobs; the sweep report is left out (tests/test_sweep.py covers it)
SWEEP = (
    "-m",
    "task.n_questions=3",
    "sampling.n_samples=1",
    "model.faithfulness=0.2,0.9",
    "+hydra.callbacks.sweep_report.enabled=false",
)


def _hydra(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True).hydra


def _sweep(cwd: Path, name: str, *extra: str) -> Path:
    run_cli(cwd, *SWEEP, f"cache.path={name}.sqlite", f"hydra.sweep.dir=sweeps/{name}", *extra)
    return cwd / "sweeps" / name


def _jobs(sweep: Path) -> dict[str, list[dict]]:
    return {p.name: comparable(load_records(p)) for p in sorted(sweep.glob("[0-9]*"))}


@pytest.fixture(scope="module")
def basic(tmp_path_factory) -> tuple[Path, dict[str, list[dict]]]:
    cwd = tmp_path_factory.mktemp("launchers")
    sweep = _sweep(cwd, "basic")
    jobs = _jobs(sweep)
    assert sorted(jobs) == ["0", "1"] and all(jobs.values())
    return cwd, jobs


# ----------------------------------------------------------------------------- presets
@needs_joblib
def test_parallel_preset_is_joblib_with_two_jobs():
    launcher = _hydra("hydra/launcher=parallel").launcher
    assert launcher._target_.endswith("JoblibLauncher") and launcher.n_jobs == 2


@needs_submitit
def test_slurm_preset_is_typed_submitit_slurm():
    launcher = _hydra("hydra/launcher=slurm", "hydra.launcher.partition=cpu").launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "cpu" and launcher.timeout_min > 0
    with pytest.raises(ConfigError, match="partiton"):  # the plugin's schema checks keys
        check_overrides(["hydra/launcher=slurm", "+hydra.launcher.partiton=cpu"])


def test_multirun_jobs_tag_their_log_lines():
    hydra = _hydra()
    simple = hydra.job_logging.formatters.simple
    assert simple.format == "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # a run
    with open_dict(hydra):
        hydra.job.num = 3  # what a launcher sets for each job
    assert simple.format == "[%(asctime)s][job 3][%(name)s][%(levelname)s] - %(message)s"


def test_a_launcher_without_its_plugin_fails_naming_the_extra(monkeypatch):
    monkeypatch.setitem(cli.LAUNCHER_PLUGINS, "parallel", ("no_such_plugin_module", "joblib"))
    with pytest.raises(ConfigError, match=r"pip install 'cotfaith\[joblib\]'"):
        check_overrides(["hydra/launcher=parallel"])


# ----------------------------------------------------------------------------- sweeps
@pytest.mark.slow
def test_basic_sweep_loads_as_one_table(basic):
    from cotfaith import load_run

    cwd, jobs = basic
    result = load_run(cwd / "sweeps" / "basic")
    assert list(result.jobs["job"]) == ["0", "1"]
    assert list(result.jobs["model.faithfulness"]) == [0.2, 0.9]
    assert len(result.records) == sum(len(v) for v in jobs.values())
    by_job = result.records.groupby("job")["model.faithfulness"].first()
    assert by_job.to_dict() == {"0": 0.2, "1": 0.9}


@pytest.mark.slow
@needs_joblib
def test_joblib_sweep_gives_the_basic_launchers_records(basic):
    cwd, reference = basic
    proc = run_cli(
        cwd,
        *SWEEP,
        "cache.path=joblib.sqlite",
        "hydra.sweep.dir=sweeps/joblib",
        "hydra/launcher=parallel",  # conf/hydra/launcher/parallel.yaml: joblib, 2 jobs
    )
    assert _jobs(cwd / "sweeps" / "joblib") == reference
    out = proc.stdout + proc.stderr
    assert "Joblib.Parallel" in out
    assert "[job 0][cotfaith]" in out and "[job 1][cotfaith]" in out  # interleaved, tagged


@pytest.mark.slow
@needs_submitit
def test_submitit_local_sweep_gives_the_basic_launchers_records(basic):
    cwd, reference = basic
    sweep = _sweep(cwd, "submitit", "hydra/launcher=submitit_local")
    assert _jobs(sweep) == reference
    logs = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.out"))
    assert "[job 0][cotfaith]" in logs and "[job 1][cotfaith]" in logs
