"""`pip install .` (not editable) and a wheel work from any folder: conf/ ships inside the package
(cotfaith/conf), the command finds it there, and `cotfaith --version` says the version."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from cotfaith.cli import CONFIG_DIR, find_config_dir

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _can_build_offline() -> bool:
    """The build-system's setuptools (77: an SPDX license; it builds wheels by itself)."""
    import setuptools

    major = int(setuptools.__version__.split(".")[0])
    return major >= 77


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not _can_build_offline():
        pytest.skip("building a wheel offline needs setuptools>=77: pip install -e '.[dev]'")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy: the build leaves build/ and *.egg-info behind
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("cotfaith", "conf"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    dist = tmp / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-q", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = dist.glob("cotfaith-*.whl")
    return built


def test_the_package_list_names_every_subpackage():
    """pyproject lists packages (conf/ is mapped into cotfaith.conf); a new one must be added."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "cotfaith").rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert PYPROJECT["tool"]["setuptools"]["package-dir"]["cotfaith.conf"] == "conf"


def test_the_source_tree_uses_its_own_conf():
    """Editable install / checkout: conf/ at the top of the repo, so edits apply at once."""
    assert find_config_dir() == ROOT / "conf" and Path(CONFIG_DIR) == ROOT / "conf"


def test_launcher_extras_are_declared():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert any(r.startswith("hydra-joblib-launcher") for r in extras["joblib"])
    assert any(r.startswith("hydra-submitit-launcher") for r in extras["slurm"])


def test_the_wheel_ships_every_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(p.relative_to(ROOT / "conf") for p in (ROOT / "conf").rglob("*.yaml"))
    assert len(configs) > 20
    missing = [str(c) for c in configs if f"cotfaith/conf/{c.as_posix()}" not in names]
    assert not missing, f"not in the wheel: {missing}"
    for required in ("config.yaml", "experiment/lanham2023.yaml", "hydra/launcher/slurm.yaml"):
        assert f"cotfaith/conf/{required}" in names
    assert "cotfaith/notebook.py" in names and "cotfaith/tasks/__init__.py" in names
    assert not any(n.startswith("conf/") for n in names)  # no stray top-level package


def _site_packages_of_this_python() -> list[str]:
    """Where this interpreter's dependencies are (a CI venv is not the base installation)."""
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return sorted(p for p in paths if Path(p).is_dir())


@pytest.mark.slow
def test_the_wheel_installs_and_runs_from_another_folder(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
        timeout=120,
    )
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # dependencies from this interpreter's site-packages (no network); path lines only, so
    # an editable cotfaith there is not picked up
    (Path(purelib) / "_cotfaith_test_deps.pth").write_text(
        "\n".join(_site_packages_of_this_python()) + "\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
        + ["--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}

    where = subprocess.run(
        [str(python), "-c", "import cotfaith; print(cotfaith.__file__)"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=env,
    )
    assert Path(where.stdout.strip()).is_relative_to(purelib), where.stdout + where.stderr
    assert (Path(purelib) / "cotfaith" / "conf" / "config.yaml").is_file()
    assert not (Path(purelib) / "conf").exists()  # so the command can only use cotfaith/conf

    done = subprocess.run(
        [str(venv / "bin" / "cotfaith"), "task.n_questions=3", "sampling.n_samples=1"]
        + ["progress=false"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (summary,) = elsewhere.glob("outputs/*/*/summary.csv")
    assert (summary.parent / "report.html").is_file()


def test_version_flag_prints_the_version_and_exits_0(monkeypatch, capsys):
    from cotfaith import cli

    monkeypatch.setattr(sys, "argv", ["cotfaith", "--version"])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 0
    assert capsys.readouterr().out == f"cotfaith {version('cotfaith')}\n"
