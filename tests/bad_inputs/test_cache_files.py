"""Cache files (cache.path): corrupt, truncated, foreign, misplaced, locked, or failing under a
running experiment: one line naming the file, never a traceback and never a hang."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from cotfaith.cache import CacheMode, RequestCache
from cotfaith.errors import CotfaithError
from tests.bad_inputs.corpus import one_line, unwritable_system_folder


def _truncated_sqlite(path: Path) -> None:
    good = path.with_suffix(".good")
    RequestCache(good).close()
    path.write_bytes(good.read_bytes()[:1000])


def _foreign_table(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE responses (key TEXT)")  # another program's file, same table name
    db.commit()
    db.close()


def _damaged_row(path: Path) -> None:
    cache = RequestCache(path)
    cache._db.execute(
        "INSERT INTO responses VALUES (?, 'p', 'm', '{}', '{not json', 0, NULL)", ("0" * 64,)
    )
    cache.close()


def _sqlite_header_then_noise(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(4000))


def _in_a_file(path: Path) -> Path:
    (path.parent / "afile").write_text("x")
    return path.parent / "afile" / "cache.sqlite"


def _in_system_folder(path: Path) -> Path:
    folder = unwritable_system_folder()
    if folder is None:
        pytest.skip("no folder here that even root cannot write in")
    return folder / "cotfaith" / "cache.sqlite"


# (what, how the file is made (may return another path), mode, substring of the error)
CACHE_FILES = [
    ("random bytes", lambda p: p.write_bytes(os.urandom(4096)), "read_write", "not a usable"),
    ("text file", lambda p: p.write_text("not a database\n" * 50), "read_write", "not a usable"),
    ("truncated", _truncated_sqlite, "read_write", "cache.path"),
    ("a folder", lambda p: p.mkdir(), "read_write", "is a folder"),
    ("sqlite header then noise", _sqlite_header_then_noise, "read_write", "not a usable"),
    ("another program's sqlite file", _foreign_table, "read_write", "not a cotfaith cache"),
    ("a damaged row", _damaged_row, "read_write", "not valid JSON"),
    ("inside a file", _in_a_file, "read_write", "cannot open"),
    ("in a folder nobody can write", _in_system_folder, "read_write", "cannot open"),
    ("replay of a missing file", lambda p: None, "replay", "does not exist"),
    ("random bytes, replay", lambda p: p.write_bytes(os.urandom(4096)), "replay", "not a usable"),
    ("unknown mode", lambda p: None, "bogus", "cache.mode"),
]


@pytest.mark.parametrize("what, make, mode, expected", CACHE_FILES, ids=[c[0] for c in CACHE_FILES])
def test_bad_cache_files_are_one_line(tmp_path, what, make, mode, expected):
    path = tmp_path / "cache.sqlite"
    made = make(path)
    path = made if isinstance(made, Path) else path
    with pytest.raises(CotfaithError) as e:
        cache = RequestCache(path, mode)
        cache.get("0" * 64)  # a truncated or damaged file may open and fail at the first read
    message = one_line(str(e.value))
    assert expected in message
    if mode == "bogus":
        assert message.startswith("cache.mode:")  # the key at fault, not the file
    else:
        assert ("cache.path" in message or "cache.mode=" in message) and str(path) in message


def test_an_empty_file_is_a_new_cache(tmp_path):
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"")
    cache = RequestCache(path)
    cache.put("k" * 64, {"provider": "p", "model": "m"}, {"messages": []}, {"text": "x"})
    assert cache.get("k" * 64) == {"text": "x"}
    cache.close()


def test_a_locked_cache_fails_in_one_line_rather_than_hanging(tmp_path):
    path = tmp_path / "cache.sqlite"
    RequestCache(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
    try:
        cache = RequestCache(path)
        cache._db.execute("PRAGMA busy_timeout=200")  # the test's patience, not the default
        started = time.monotonic()
        with pytest.raises(CotfaithError) as e:
            cache.put("k" * 64, {"provider": "p", "model": "m"}, {"messages": []}, {"text": "x"})
        assert time.monotonic() - started < 5
        message = one_line(str(e.value))
        assert "cannot store a response" in message and "locked" in message
        assert str(path) in message
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_claim_on_a_locked_cache_is_one_line_too(tmp_path):
    path = tmp_path / "cache.sqlite"
    RequestCache(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        cache = RequestCache(path, CacheMode.read_write)
        cache._db.execute("PRAGMA busy_timeout=200")
        with pytest.raises(CotfaithError) as e:
            cache.claim("k" * 64)
        assert "cannot claim a request" in one_line(str(e.value))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
