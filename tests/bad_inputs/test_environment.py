"""The environment a run starts in: variables, folders, the disk, the locale, the terminal.

Each row is a real condition, not a mock: an unset variable, a plugin module that fails, a
folder even root cannot write in (sysfs), a chmod-ed folder (skipped as root, who writes
anyway), a "full disk" made with RLIMIT_FSIZE in the child (writes past the limit fail with
EFBIG), a closed port for downloads, LANG=C with non-ASCII data, a closed stdin, a dumb
terminal, a read-only HOME. A run that cannot go on exits 2 with one `cotfaith: error:` line
naming the variable, folder or file; a run the condition does not concern finishes (exit 0).
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

import pytest

from cotfaith import registry
from cotfaith.errors import ConfigError
from cotfaith.models import build_model
from tests.bad_inputs.corpus import (
    EXIT_CONFIG,
    EXIT_OK,
    TINY,
    Cli,
    compose,
    is_root,
    one_line,
    params,
    pool_fixture,
    run_case,
    unwritable_system_folder,
)

OPENAI = ("model=openai", "model.name=gpt-4o-mini", "model.api_key_env=COTFAITH_TEST_KEY")


# ----------------------------------------------------------------------------- in-process
@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_the_api_key_variable_unset_or_empty_names_it(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("COTFAITH_TEST_KEY", raising=False)
    else:
        monkeypatch.setenv("COTFAITH_TEST_KEY", value)
    model = build_model(compose(*OPENAI).model)
    with pytest.raises(ConfigError) as e:
        model.api_key()
    assert "COTFAITH_TEST_KEY" in one_line(str(e.value))
    assert "model.api_key_env" in str(e.value)


PLUGINS = [
    ("does not exist", "cotfaith_no_such_plugin", None, "cannot import plugin module"),
    ("raises on import", "cotfaith_boom_plugin", "x = 1\nraise RuntimeError('boom')\n", "line 2"),
    ("syntax error", "cotfaith_broken_plugin", "def (:\n", "SyntaxError"),
    ("a path, not a module", "/tmp/my_plugin.py", None, "cannot import plugin module"),
]


@pytest.mark.parametrize("what, module, source, expected", PLUGINS, ids=[p[0] for p in PLUGINS])
def test_a_plugin_that_cannot_load_is_one_line(
    tmp_path, monkeypatch, what, module, source, expected
):
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(registry.PLUGINS_ENV, module)
    monkeypatch.setattr(registry, "_discovered", False)
    with pytest.raises(ConfigError) as e:
        registry.discover()
    message = one_line(str(e.value))
    assert message.startswith("COTFAITH_PLUGINS") and module in message and expected in message
    sys.modules.pop(module, None)


# ----------------------------------------------------------------------------- command line
def _no_root() -> str | None:
    return "root writes in a read-only folder" if is_root() else None


def _no_system_folder() -> str | None:
    return None if unwritable_system_folder() else "no folder here even root cannot write in"


def _read_only(name: str):
    def setup(tmp: Path) -> None:
        (tmp / name).mkdir()
        (tmp / name).chmod(0o500)

    return setup


def _fsize(limit: int):
    def limit_writes() -> None:  # in the child, before exec: a file cannot grow past `limit`
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_writes


def _close_stdin() -> None:
    os.close(0)


def _plugin(tmp: Path) -> None:
    (tmp / "cotfaith_boom_plugin.py").write_text("x = 1\nraise RuntimeError('boom')\n")


def _non_ascii_data(tmp: Path) -> None:
    rows = [
        {"question": f"Combien font {i} × 2 ? (café, naïve)", "options": ["A)1", f"B){2 * i}"]}
        | {"correct": "B"}
        for i in range(1, 5)
    ]
    (tmp / "dev.json").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )


def _records_kept(tmp: Path, proc) -> None:
    """A run stopped by a full disk: what was written before is whole JSON, line by line
    (a last line cut by the disk is the only one allowed to be partial)."""
    records = tmp / "out" / "records.jsonl"
    lines = records.read_text().splitlines() if records.exists() else []
    for line in lines[:-1]:
        json.loads(line)


def _non_ascii_recorded(tmp: Path, proc) -> None:
    rows = [json.loads(x) for x in (tmp / "out" / "records.jsonl").read_text().splitlines()]
    assert rows and (tmp / "out" / "report.html").is_file()


C_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
SYS = "/sys/cotfaith_test"

CLI = [
    Cli(
        "api_key_env names an unset variable",
        (*TINY, *OPENAI, "hydra.run.dir=out"),
        EXIT_CONFIG,
        ("model.api_key_env", "COTFAITH_TEST_KEY"),
        {"COTFAITH_TEST_KEY": None},
    ),
    Cli(
        "COTFAITH_PLUGINS module raises on import",
        (*TINY, "hydra.run.dir=out"),
        EXIT_CONFIG,
        ("COTFAITH_PLUGINS", "cotfaith_boom_plugin", "RuntimeError"),
        {"COTFAITH_PLUGINS": "cotfaith_boom_plugin", "PYTHONPATH": "{tmp}"},
        _plugin,
    ),
    Cli(
        "output folder read-only (chmod)",
        (*TINY, "hydra.run.dir=ro/out"),
        EXIT_CONFIG,
        ("hydra.run.dir", "cannot write in", "ro"),
        setup=_read_only("ro"),
        skip=_no_root,
    ),
    Cli(
        "output folder on a file system nobody writes (sysfs)",
        (*TINY, f"hydra.run.dir={SYS}/out"),
        EXIT_CONFIG,
        ("hydra.run.dir", "cannot write in /sys"),
        skip=_no_system_folder,
    ),
    Cli(
        "launch folder not writable (chmod), default output folder",
        TINY,
        EXIT_CONFIG,
        ("hydra.run.dir", "cannot write in", "ro"),
        setup=_read_only("ro"),
        cwd="{tmp}/ro",
        skip=_no_root,
    ),
    Cli(
        "launch folder not writable (sysfs), default output folder",
        TINY,
        EXIT_CONFIG,
        ("hydra.run.dir", "cannot write in /sys"),
        cwd="/sys",
        skip=_no_system_folder,
    ),
    Cli(
        "cache folder read-only (chmod)",
        (*TINY, "cache.path=ro/cache.sqlite", "hydra.run.dir=out"),
        EXIT_CONFIG,
        ("cache.path", "ro/cache.sqlite"),
        setup=_read_only("ro"),
        skip=_no_root,
    ),
    Cli(
        "cache folder on a file system nobody writes (sysfs)",
        (*TINY, f"cache.path={SYS}/cache.sqlite", "hydra.run.dir=out"),
        EXIT_CONFIG,
        ("cache.path", "cannot open", SYS),
        skip=_no_system_folder,
    ),
    Cli(
        "disk full at start (RLIMIT_FSIZE=0)",
        (*TINY, "hydra.run.dir=out"),
        EXIT_CONFIG,
        ("hydra.run.dir", "File too large"),
        preexec=_fsize(0),
    ),
    Cli(
        "disk full during the run (RLIMIT_FSIZE=64 KiB)",
        ("progress=false", "task.n_questions=20", "sampling.n_samples=2", "hydra.run.dir=out"),
        EXIT_CONFIG,
        ("kept",),
        preexec=_fsize(64 * 1024),
        after=_records_kept,
    ),
    Cli(
        "COTFAITH_DATA_URL unreachable, no local copy",
        ("progress=false", "task=aqua", "hydra.run.dir=out"),
        EXIT_CONFIG,
        ("cannot download", "127.0.0.1:9", "task.path"),
        {"COTFAITH_DATA_URL": "http://127.0.0.1:9"},
    ),
    Cli(
        "XDG_CACHE_HOME is a file",
        ("progress=false", "task=aqua", "hydra.run.dir=out"),
        EXIT_CONFIG,
        ("cannot make the data folder", "task.data_dir"),
        {"XDG_CACHE_HOME": "{tmp}/afile"},
        lambda tmp: (tmp / "afile").write_text("x"),
    ),
    Cli(
        "HYDRA_FULL_ERROR=1 and a config that does not compose",
        (*TINY, "task.n_questions=abc", "hydra.run.dir=out"),
        EXIT_CONFIG,
        ("key task.n_questions",),
        {"HYDRA_FULL_ERROR": "1"},
    ),
    Cli(
        "LANG=C (ASCII locale) and non-ASCII data",
        (*TINY, "task=aqua", "task.path=dev.json", "hydra.run.dir=out"),
        EXIT_OK,
        (),
        C_LOCALE,
        _non_ascii_data,
        after=_non_ascii_recorded,
    ),
    Cli(
        "LANG=C (ASCII locale) and a non-ASCII argument",
        (*TINY, "prompts.path=invité/p.yaml", "hydra.run.dir=out"),
        EXIT_CONFIG,
        ("locale", "LANG=C.UTF-8"),
        C_LOCALE,
    ),
    Cli("stdin closed", (*TINY, "hydra.run.dir=out"), EXIT_OK, (), preexec=_close_stdin),
    Cli(
        "TERM=dumb, no tty, progress bar on",
        (*TINY, "progress=true", "hydra.run.dir=out"),
        EXIT_OK,
        ("100%",),
        {"TERM": "dumb"},
    ),
    Cli(
        "HOME read-only",
        (*TINY, "hydra.run.dir=out"),
        EXIT_OK,
        (),
        {"HOME": "/proc/cotfaith-home", "MPLCONFIGDIR": None, "XDG_CACHE_HOME": None},
    ),
    Cli(
        "MPLBACKEND names a backend that does not exist",
        (*TINY, "hydra.run.dir=out"),
        EXIT_OK,
        (),
        {"MPLBACKEND": "no_such_backend"},
    ),
]
env_pool = pool_fixture(CLI, "test_the_environment_on_the_command_line")


@pytest.mark.slow
@pytest.mark.parametrize("case", params(CLI))
def test_the_environment_on_the_command_line(case, env_pool):
    run_case(case, env_pool)
