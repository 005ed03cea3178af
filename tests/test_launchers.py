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


@pytest.mark.parametrize(
    "launcher",
    [
        pytest.param("basic", id="basic"),
        pytest.param("hydra/launcher=parallel", id="joblib", marks=needs_joblib),
    ],
)
def test_failed_jobs_give_the_worst_code_whichever_process_ran_them(tmp_path, launcher):
    """A job of a joblib sweep runs in another process: its failure still reaches the command's
    exit code and its one summary line (it exited 0 when every job failed), as with the basic
    launcher that runs jobs in-process."""
    proc = run_cli(
        tmp_path,
        *SWEEP,
        "cache.mode=replay",  # an empty cache to replay from: every job fails at its start
        "cache.path=none-yet.sqlite",
        "hydra.sweep.dir=sweeps/failing",
        *([launcher] if launcher != "basic" else []),
        check=False,
    )
    errors = [x for x in proc.stderr.splitlines() if x.startswith("cotfaith: error:")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "2 job(s) of the sweep failed" in errors[-1], errors
    assert errors[-1].index("job 0") < errors[-1].index("job 1")
    markers = sorted((tmp_path / "sweeps" / "failing").glob(f"*/{cli.jobs.JOB_FAILED}"))
    assert [m.parent.name for m in markers] == ["0", "1"]


@pytest.mark.slow
def test_ctrl_c_in_a_sweep_stops_the_sweep_not_only_its_job(tmp_path):
    """Ctrl-C during job 0 of a basic sweep: exit 130 at once, job 1 never starts (it used to
    run to its end, and the command exited 130 only after it)."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cotfaith",
            "-m",
            "progress=false",
            "model.latency=0.05",
            "task.n_questions=40",
            "model.faithfulness=0.2,0.9",
            "hydra.sweep.dir=sweep",
            "+hydra.callbacks.sweep_report.enabled=false",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    records = tmp_path / "sweep" / "0" / "records.jsonl"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
            records.exists() and records.stat().st_size > 2000
        ):
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert not (tmp_path / "sweep" / "1").exists()
