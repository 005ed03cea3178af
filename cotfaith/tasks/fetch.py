"""Find a task's data file: the user's local copy, else the pinned published file downloaded
into the data folder once and checked against its sha256 on every use.

Only files pinned in `cotfaith.tasks.sources` are downloaded (an unpinned download could change
under a reproduction without anyone noticing); for the others the error says where to get the
file and where to put it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from cotfaith.errors import ConfigError
from cotfaith.tasks.common import FileTaskConfig
from cotfaith.tasks.sources import PINNED

log = logging.getLogger(__name__)

DATA_URL_ENV = "COTFAITH_DATA_URL"
TIMEOUT_S = 60.0


def data_dir(cfg: FileTaskConfig) -> Path:
    if cfg.data_dir:
        return Path(cfg.data_dir).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "cotfaith" / "data"


def local_path(cfg: FileTaskConfig) -> Path | None:
    """task.path, checked to exist (relative paths: from the launch folder)."""
    if not cfg.path:
        return None
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise ConfigError(f"task.path: {path} does not exist (task {cfg.name})")
    return path


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(rel: str, cfg: FileTaskConfig, *, published: str | None = None) -> Path:
    """The data file `rel` (a path in the data folder layout, e.g. "aqua/dev.json").

    `published` is where an unpinned file can be obtained by hand (named in the error)."""
    target = data_dir(cfg) / rel
    pin = PINNED.get(rel)
    if pin is None:
        if target.is_file():
            return target  # put there by the user; nothing pinned to check it against
        where = f" from {published}" if published else ""
        raise ConfigError(
            f"task {cfg.name}: no pinned download for {rel}; get the published file{where} and "
            f"put it at {target} or set task.path=<the file or its folder>"
        )
    if target.is_file():
        got = sha256_of(target)
        if got == pin.sha256:
            return target
        log.warning("%s has sha256 %s, expected %s: downloading it again", target, got, pin.sha256)
    base = cfg.url or os.environ.get(DATA_URL_ENV)
    url = f"{base.rstrip('/')}/{rel}" if base else pin.url
    _download(url, target, pin.sha256, cfg.name)
    return target


def _download(url: str, target: Path, sha256: str, task: str) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # XDG_CACHE_HOME or task.data_dir read-only, or a file in the way
        raise ConfigError(
            f"task {task}: cannot make the data folder {target.parent} ({e.strerror or e}); set "
            "task.data_dir to a writable folder, or task.path to a local copy"
        ) from e
    part = target.with_name(f"{target.name}.part-{os.getpid()}")  # one per process: sweeps
    log.info("task %s: downloading %s", task, url)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp, part.open("wb") as out:
            h = hashlib.sha256()
            for block in iter(lambda: resp.read(1 << 16), b""):
                h.update(block)
                out.write(block)
    except (urllib.error.URLError, OSError, ValueError) as e:
        part.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        raise ConfigError(
            f"task {task}: cannot download {url} ({reason}); offline? put the published file "
            f"at {target} or set task.path to a local copy"
        ) from e
    got = h.hexdigest()
    if got != sha256:
        part.unlink(missing_ok=True)  # a corrupt or changed file is never kept
        raise ConfigError(
            f"task {task}: download {url} has sha256 {got}, expected {sha256}; not kept "
            f"(corrupt download or a changed source)"
        )
    os.replace(part, target)  # atomic: other processes see the whole file or none


def locate(cfg: FileTaskConfig, rel: str, *, published: str | None = None) -> Path:
    """The file of `rel`: task.path itself (a file), the file of that name inside the
    task.path folder, or the download."""
    path = local_path(cfg)
    if path is None:
        return fetch(rel, cfg, published=published)
    if path.is_dir():
        inside = path / Path(rel).name
        if not inside.is_file():
            raise ConfigError(
                f"task.path: {path} holds no {Path(rel).name} (task {cfg.name}, split "
                f"{cfg.split}); point task.path at the file itself"
            )
        return inside
    return path
