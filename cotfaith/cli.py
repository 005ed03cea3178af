"""`cotfaith`: the Hydra entry point. `cotfaith --help` lists the config groups.

Before Hydra runs, the command line is checked (:func:`check_overrides`), so that what Hydra
would accept silently fails in one line instead: `+key=value` (and `++key=value`) adding a key
that no schema declares (a typo such as `+model.faithfulnes=0.3` would otherwise run the
default), a group option that does not exist (`+experiment=nope` names the presets), a group
that is not in the default config without `+`, and a launcher whose plugin is not installed.
`--allow-new-keys` lets `+` add keys the schema does not know.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib.util
import logging
import os
import secrets
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from cotfaith import jobs, starting
from cotfaith.budget import BudgetExceeded
from cotfaith.config import register_configs
from cotfaith.errors import ConfigError, CotfaithError
from cotfaith.runner import RunResult, run_async
from cotfaith.validate import credential_error

log = logging.getLogger("cotfaith")

try:
    register_configs()
    _SETUP_ERROR: CotfaithError | None = None
except CotfaithError as _e:  # a broken plugin: said in one line when the command runs
    _SETUP_ERROR = _e


def find_config_dir() -> Path:
    """conf/: shipped inside the installed package (a wheel or `pip install .`: cotfaith/conf),
    else beside the package at the top of a source checkout (an editable install, where edits
    to conf/ apply at once)."""
    package = Path(__file__).resolve().parent
    candidates = (package / "conf", package.parent / "conf")
    for candidate in candidates:
        if (candidate / "config.yaml").is_file():
            return candidate
    return candidates[0]


CONFIG_DIR = str(find_config_dir())
ALLOW_NEW_KEYS = "--allow-new-keys"
"""Command-line flag: let `+key=value` add keys that no schema declares."""
EXTRA_KEYS = frozenset({"model.size"})
"""Keys cotfaith reads though no schema declares them (the sweep report's model size)."""
# hydra/launcher options whose plugin is an optional extra: option -> (plugin module, extra)
LAUNCHER_PLUGINS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "joblib"),
    "parallel": ("hydra_plugins.hydra_joblib_launcher", "joblib"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
}


def cotfaith_version() -> str:
    """The installed distribution's version (pyproject.toml), as `cotfaith --version` says."""
    from cotfaith import __version__

    return __version__


def _job_tag(num: Any = None) -> str:
    """`[job N]` in the log lines of a multirun job (conf/config.yaml, hydra.job_logging)."""
    return "" if num is None else f"[job {num}]"


OmegaConf.register_new_resolver("cotfaith.job_tag", _job_tag, replace=True)
# one token per process for the run folder's name: two runs started in the same second get
# two folders (and a folder that is in use is refused anyway: runner.RunFolder)
_RUN_TOKEN = secrets.token_hex(3)
OmegaConf.register_new_resolver("cotfaith.run_token", lambda: _RUN_TOKEN, replace=True)


def _report(cfg: DictConfig, out_dir: Path) -> Path:
    # imported here: the report's plotting stack is most of the start-up time, and a command
    # line that fails its checks (or asks for --help) never needs it
    from cotfaith.report import ReportSettings, write_report

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


# the HTTP clients log every request at INFO: too much for a run of thousands of calls;
# fontTools logs every PDF figure's font subsetting
for _name in ("httpx", "httpx2", "openai", "anthropic", "aiohttp", "fontTools"):
    logging.getLogger(_name).setLevel(logging.WARNING)


EXIT_CONFIG, EXIT_BUDGET, EXIT_FAILED_CALLS, EXIT_INTERRUPTED = 2, 3, 4, 130


def _has_records(out_dir: Path) -> bool:
    path = out_dir / "records.jsonl"
    return path.exists() and path.stat().st_size > 0


STARTED: list[Path] = []
"""Run folders of this process's runs, once started (for what an interruption says)."""


def run(cfg: DictConfig) -> None:
    starting.end()  # Ctrl-C now stops the run, which keeps what it has
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    STARTED.append(out_dir)
    jobs.clear_failure(out_dir)  # (a folder run again: its last failure is not this one's)
    launch_dir = Path(hc.runtime.cwd)
    try:
        overrides = [str(o) for o in hc.overrides.task]
        result = asyncio.run(run_async(cfg, out_dir, launch_dir, overrides))
    except BudgetExceeded:
        if _has_records(out_dir):
            log.info("budget reached: report of the finished records: %s", _report(cfg, out_dir))
        raise
    except (KeyboardInterrupt, asyncio.CancelledError):
        # records and run.json are already flushed; report what is there and say how to go on
        if _has_records(out_dir):
            _report(cfg, out_dir)
        print(
            f"cotfaith: interrupted: every finished record is kept in {out_dir}; run the same "
            "command again to resume (calls already made come from the cache)",
            file=sys.stderr,
        )
        sys.exit(EXIT_INTERRUPTED)
    if result.dry_run is not None:
        _print_dry_run(result)
        return
    log.info(
        "%d records from %d model calls (%d served from the cache, %d retries, %d failed) "
        "in %.1f s; spent %s",
        result.records,
        result.calls,
        result.cache_hits,
        result.retries,
        result.failed_calls,
        result.seconds,
        f"${result.spent_usd:.4f}"
        if result.priced
        else "an unknown amount (no price in conf/prices)",
    )
    if result.failed_calls:
        log.warning(
            "%d calls failed after every retry; they are recorded as call_failed, "
            "were not cached, and will be retried by running again",
            result.failed_calls,
        )
    report = _report(cfg, out_dir) if result.records else None
    log.info("results in %s (report: %s)", out_dir, report)
    if result.status == "failed_calls":
        print(
            f"cotfaith: error: {result.failed_calls} of {result.calls} model calls failed for "
            f"good ({result.answers} answers read); the run did not measure what it was asked "
            f"to (max_failed_share={cfg.get('max_failed_share')}). Run again to retry them; "
            "see run.json and the report",
            file=sys.stderr,
        )
        sys.exit(EXIT_FAILED_CALLS)


# ----------------------------------------------------------------------------- checks
def _values(override: Any, options: list[str]) -> list[str]:
    """The option names an override of a config group selects (one, a list or a sweep)."""
    from hydra.core.override_parser.types import Glob

    value = override.value()
    if isinstance(value, Glob):
        return value.filter(options)
    if override.is_sweep_override():
        return [str(v) for v in override.sweep_string_iterator()]
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _closest(word: str, choices: Sequence[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _is_open(node: Any) -> bool:
    """A mapping that takes new keys: a `dict[str, ...]` field (prices, intervention,
    hydra.job.env_set) or a plain YAML mapping, not one backed by a schema dataclass."""
    return OmegaConf.get_type(node) in (dict, None)


def _new_key_error(cfg: DictConfig, override: Any) -> str | None:
    """Why `+key=...` / `++key=...` would add a key no schema declares (None: it may)."""
    key = override.key_or_group
    if key in EXTRA_KEYS:
        return None
    node: Any = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, DictConfig) or node._is_none() or node._is_missing():
            return None  # a value or an empty slot: Hydra says what is wrong, if anything
        if part in node.keys():
            node = node._get_node(part)
            continue
        if _is_open(node):
            return None
        where = ".".join(parts[:i])
        choice = (OmegaConf.select(cfg, "hydra.runtime.choices") or {}).get(parts[0])
        chosen = f" ({parts[0]}={choice})" if i and isinstance(choice, str) else ""
        owner = f"{where!r}{chosen} has" if where else "the config has"
        sign = "++" if override.is_force_add() else "+"
        return (
            f"{override.input_line}: {owner} no key {part!r}{_closest(part, list(node.keys()))}; "
            f"'{sign}' adds only keys the config schema allows (to add it anyway: "
            f"cotfaith {ALLOW_NEW_KEYS} ..., or cotfaith.run(..., allow_new_keys=True))"
        )
    return None  # it exists: `++` overrides it (and Hydra refuses `+` naming it)


def _launcher_error(override: Any, options: list[str]) -> str | None:
    for option in options:
        plugin = LAUNCHER_PLUGINS.get(option)
        if plugin is not None and importlib.util.find_spec(plugin[0]) is None:
            return (
                f"{override.input_line}: this launcher needs its Hydra plugin: "
                f"pip install 'cotfaith[{plugin[1]}]'"
            )
    return None


def check_overrides(
    overrides: Sequence[str],
    *,
    allow_new_keys: bool = False,
    config_dir: str | Path = CONFIG_DIR,
    config_name: str = "config",
) -> None:
    """Raise ConfigError (one line) for an override Hydra would take silently or explain badly.

    Checked: every config-group option exists (`+experiment=nope` names the presets); a group
    outside the default config is added with `+`; a launcher's plugin is installed; `+key=` and
    `++key=` add only keys a schema allows (an open mapping, or a key cotfaith reads), unless
    `allow_new_keys`. Anything else (syntax, types, plain `key=value` typos) is left to Hydra,
    which names the key itself.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from hydra.types import RunMode

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return  # a syntax error: Hydra reports it with its position
    if not parsed:
        return
    searchpath = [o.input_line for o in parsed if o.key_or_group == "hydra.searchpath"]
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3", job_name="cli"):
        loader = GlobalHydra.instance().config_loader()
        options_of: dict[str, list[str]] = {}

        def options(group: str) -> list[str]:
            if group not in options_of:
                options_of[group] = loader.get_group_options(
                    group, config_name=config_name, overrides=searchpath
                )
            return options_of[group]

        groups, adds = [], []
        for o in parsed:
            if o.is_delete():
                continue
            if o.key_or_group == "hydra/launcher":
                error = _launcher_error(o, _values(o, []))
                if error:
                    raise ConfigError(error)
            if options(o.key_or_group):
                groups.append(o)
            elif (o.is_add() or o.is_force_add()) and not allow_new_keys:
                adds.append(o)
        in_defaults: set[str] | None = None
        for o in groups:
            group, available = o.key_or_group, options(o.key_or_group)
            for name in _values(o, available):
                if name not in available:
                    what = "preset" if group == "experiment" else "option"
                    raise ConfigError(
                        f"{o.input_line}: no {group} {what} {name!r}{_closest(name, available)}; "
                        f"available: {', '.join(available)}"
                    )
            if not (o.is_add() or o.is_force_add()) and "/" not in group:
                if in_defaults is None:
                    defaults = loader.compute_defaults_list(config_name, searchpath, RunMode.RUN)
                    in_defaults = set(defaults.overrides.known_choices) | {
                        d.config_path.rsplit("/", 1)[0]
                        for d in defaults.defaults
                        if d.config_path and "/" in d.config_path
                    }
                if group not in in_defaults:
                    raise ConfigError(
                        f"{o.input_line}: {group} is not in the default config; add it with "
                        f"+{o.input_line}"
                    )
        if not adds:
            return
        # compose what the rest of the command line selects (each option of a swept group in
        # turn), then look the added keys up in it
        base, sweeps = [], []
        for o in parsed:
            if o in adds:
                continue
            if o.is_sweep_override():
                if o in groups:
                    sweeps.append((o, _values(o, options(o.key_or_group))))
                continue
            base.append(o.input_line)
        sweeps = [(o, vals) for o, vals in sweeps if vals]
        first = [f"{o.get_key_element()}={vals[0]}" for o, vals in sweeps]
        variants = [base + first]
        for i, (o, vals) in enumerate(sweeps):
            prefix = o.key_or_group.replace("/", ".") + "."
            if not any(a.key_or_group.startswith(prefix) for a in adds):
                continue  # this group's options do not hold the added keys
            others = first[:i] + first[i + 1 :]
            variants += [base + others + [f"{o.get_key_element()}={v}"] for v in vals[1:]]
        for variant in variants:
            try:
                cfg = compose(config_name, overrides=variant, return_hydra_config=True)
            except HydraException:
                return  # another problem: Hydra reports it when it runs
            for o in adds:
                error = _new_key_error(cfg, o)
                if error:
                    raise ConfigError(error)


def main() -> None:
    try:
        _main()
    except KeyboardInterrupt:
        # Ctrl-C outside a run's own handling (in `run`): composing the config, the checks, or
        # the report after it
        if STARTED:
            said = f"every finished record is kept in {STARTED[-1]}"
        elif jobs.SWEEPS:  # the parent of a joblib or submitit sweep (its jobs ran elsewhere)
            said = f"every finished job's records are kept under {jobs.SWEEPS[-1]}"
        else:
            said = "before the run started; nothing was run"
        print(f"cotfaith: interrupted ({said})", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


def _main() -> None:
    argv = sys.argv[1:]
    if "--version" in argv:
        print(f"cotfaith {cotfaith_version()}")
        sys.exit(0)
    allow_new_keys = ALLOW_NEW_KEYS in argv
    if allow_new_keys:
        sys.argv = [sys.argv[0], *(a for a in argv if a != ALLOW_NEW_KEYS)]
    if _SETUP_ERROR is not None:
        print(f"cotfaith: error: {_SETUP_ERROR}", file=sys.stderr)
        sys.exit(2)
    if not (Path(CONFIG_DIR) / "config.yaml").is_file():
        print(
            f"cotfaith: error: the config folder is missing ({CONFIG_DIR}); reinstall cotfaith",
            file=sys.stderr,
        )
        sys.exit(2)
    undecodable = next((a for a in sys.argv[1:] if _undecodable(a)), None)
    if undecodable is not None:
        shown = undecodable.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        print(
            f"cotfaith: error: {shown}: the command line is not text in this locale's encoding "
            f"({sys.getfilesystemencoding()}); use a UTF-8 locale (e.g. export LANG=C.UTF-8) "
            "or PYTHONUTF8=1",
            file=sys.stderr,
        )
        sys.exit(EXIT_CONFIG)
    secret = credential_error(sys.argv[1:])
    if secret is not None:  # before Hydra writes the overrides anywhere
        print(f"cotfaith: error: {secret}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    try:
        _check_command_line(sys.argv[1:], allow_new_keys=allow_new_keys)
    except ConfigError as e:
        print(f"cotfaith: error: {e}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()
    failed = jobs.failed()  # the sweep goes on past a failed job, and ends with the worst code
    if failed:
        listed = ", ".join(f"{job}: {code}" for job, code in failed)
        print(
            f"cotfaith: error: {len(failed)} job(s) of the sweep failed ({listed})",
            file=sys.stderr,
        )
        sys.exit(max(code for _, code in failed))


def _undecodable(arg: str) -> bool:
    """An argument Python could not decode in the locale's encoding (LANG=C and a non-ASCII
    path): it holds lone surrogates, which Hydra's override grammar rejects in several lines."""
    return any("\udc80" <= c <= "\udcff" for c in arg)


def _check_command_line(argv: list[str], *, allow_new_keys: bool) -> None:
    from hydra._internal.utils import get_args_parser

    try:
        args, _ = get_args_parser().parse_known_args(argv)
    except SystemExit:
        return  # Hydra says what is wrong with its flags
    if args.config_dir or args.config_path or args.config_name or args.shell_completion:
        return  # another primary config: Hydra checks it
    check_overrides(args.overrides or [], allow_new_keys=allow_new_keys)
    writes = not (args.help or args.hydra_help or args.cfg or args.info or args.resolve)
    check_composition(args.overrides or [], multirun=bool(args.multirun), output=writes)


def _one_line_hydra_error(e: Exception) -> str:
    """Hydra's and OmegaConf's several-line messages as one line naming the override and key."""
    from hydra.errors import OverrideParseException

    if isinstance(e, OverrideParseException):
        first = next((x.strip() for x in str(e.message).splitlines() if x.strip()), "")
        return f"{e.override}: cannot parse this override ({first}); see cotfaith --help"
    skip = ("full_key:", "reference_type=", "object_type=", "See https://")
    parts = [x.strip() for x in str(e).splitlines() if x.strip() and not x.strip().startswith(skip)]
    cause = e.__cause__ if isinstance(e.__cause__, OmegaConfBaseException) else None
    if isinstance(e, OmegaConfBaseException):
        cause, parts = e, []
    if cause is not None:
        lines = [x.strip() for x in str(cause).splitlines() if x.strip()]
        detail = next((x for x in lines if not x.startswith(skip)), "")
        key = getattr(cause, "full_key", None)
        parts.append(f"{detail} (key {key})" if key and detail else detail or f"key {key}")
    return "; ".join(p.rstrip(".") for p in parts if p) or type(e).__name__


def _swept(parsed: list[Any], options: Any) -> list[list[str]]:
    """Command lines of the jobs a multirun would compose: the first value of every sweep,
    then each other value of one sweep at a time (each bad value is found, not each job)."""
    base, sweeps = [], []
    for o in parsed:
        if o.is_sweep_override():
            values = (
                _values(o, options(o.key_or_group))
                if options(o.key_or_group)
                else [str(v) for v in o.sweep_string_iterator()]
            )
            if values:
                sweeps.append((o.get_key_element(), values))
        else:
            base.append(o.input_line)
    first = [f"{k}={vals[0]}" for k, vals in sweeps]
    variants = [base + first]
    for i, (key, vals) in enumerate(sweeps):
        others = first[:i] + first[i + 1 :]
        variants += [base + others + [f"{key}={v}"] for v in vals[1:]]
    return variants[:64]


def check_composition(
    overrides: Sequence[str],
    *,
    multirun: bool = False,
    output: bool = True,
    config_dir: str | Path = CONFIG_DIR,
    config_name: str = "config",
) -> None:
    """Raise ConfigError (one line) where Hydra would stop with several lines and exit code 1
    before cotfaith runs: a config that does not compose (a value of the wrong type, a key a
    typed config lacks, a sweep without -m, a syntax error) or an output folder Hydra cannot
    create or write (a file in the way, a read-only or full disk)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as e:
        raise ConfigError(_one_line_hydra_error(e)) from None
    searchpath = [o.input_line for o in parsed if o.key_or_group == "hydra.searchpath"]
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3", job_name="cli"):
        loader = GlobalHydra.instance().config_loader()

        def options(group: str) -> list[str]:
            return loader.get_group_options(group, config_name=config_name, overrides=searchpath)

        variants = _swept(parsed, options) if multirun else [list(overrides)]
        cfg = None
        for variant in variants:
            try:
                composed = compose(config_name, overrides=variant, return_hydra_config=True)
            except (HydraException, OmegaConfBaseException) as e:
                raise ConfigError(_one_line_hydra_error(e)) from None
            cfg = composed if cfg is None else cfg
        if output and cfg is not None:
            key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
            try:
                folder = str(OmegaConf.select(cfg, key, throw_on_missing=True))
            except Exception:  # noqa: BLE001 - an interpolation only a job can resolve
                return
            check_output_folder(Path(folder), key)


def check_output_folder(folder: Path, key: str = "hydra.run.dir") -> None:
    """The run folder can be made and written: no file in its way, and its nearest existing
    folder takes a new file (a read-only folder or file system, or a full disk, fail here in
    one line instead of in Hydra's first write)."""
    folder = folder if folder.is_absolute() else Path.cwd() / folder
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is" if existing == folder else f"(in {key}={folder}) is"
        raise ConfigError(f"{key}: {existing} {where} a file, not a folder; choose another folder")
    try:
        with tempfile.TemporaryFile(dir=existing) as probe:
            probe.write(b"cotfaith")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as e:
        raise ConfigError(
            f"{key}: cannot write in {existing} ({e.strerror or e}); choose a writable folder "
            f"({key}=...)"
        ) from None


def _fail(code: int, message: str | None = None) -> None:
    """End a run with `code`; in a multirun, end only this job (the others still run)."""
    from hydra.types import RunMode

    if message:
        print(f"cotfaith: error: {message}", file=sys.stderr)
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN and code != EXIT_INTERRUPTED:  # Ctrl-C stops the sweep
        job = f"job {hc.job.num} ({hc.job.override_dirname or 'defaults'})"
        jobs.record_failure(Path(hc.runtime.output_dir), job, code, message)
        log.error("%s failed (exit code %d); the sweep goes on", job, code)
        return
    sys.exit(code)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except MissingMandatoryValue as e:
        _fail(EXIT_CONFIG, f"{e.full_key} is required (set it: {e.full_key}=...)")
    except CotfaithError as e:
        # an actionable problem: one clear line on stderr, no traceback
        _fail(EXIT_BUDGET if isinstance(e, BudgetExceeded) else EXIT_CONFIG, str(e))
    except OmegaConfBaseException as e:  # a key the run needs and the config lacks (~task)
        _fail(EXIT_CONFIG, _one_line_hydra_error(e))
    except OSError as e:  # the disk filled up, a folder became read-only: name the file
        where = f"{e.filename}: " if e.filename else ""
        _fail(EXIT_CONFIG, f"{where}{e.strerror or e}; the run stopped, finished records are kept")
    except sqlite3.Error as e:
        _fail(
            EXIT_CONFIG,
            f"cache.path: the cache failed ({e}); the run stopped, finished records are kept",
        )
    except SystemExit as e:
        if isinstance(e.code, int) and e.code:
            _fail(e.code)
        else:
            raise


__all__ = [
    "main",
    "CONFIG_DIR",
    "check_composition",
    "check_output_folder",
    "check_overrides",
    "cotfaith_version",
    "find_config_dir",
]
