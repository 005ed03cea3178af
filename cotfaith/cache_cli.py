"""`cotfaith-cache`: see and manage what a request cache holds.

    cotfaith-cache stats                         rows per backend/model, size, cost paid
    cotfaith-cache export RUN_DIR OUT.jsonl      the calls behind a run (replayable by others)
    cotfaith-cache import FILE.jsonl             add an export to the cache
    cotfaith-cache merge SRC... --into DST       fold shards / caches / exports into one file
    cotfaith-cache prune --model NAME | --older-than DAYS [--dry-run]
    cotfaith-cache check                         integrity, and every key recomputes

`--cache PATH` names the cache (default: outputs/cache.sqlite, the config's default, relative to
the current folder). Nothing here changes a key or a stored response; rows are only added when
their key is absent (a response already held is never overwritten) and removed by `prune`.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cotfaith.cache import RequestCache, migrate
from cotfaith.models.base import request_key

DEFAULT_CACHE = "outputs/cache.sqlite"
EXPORT_FORMAT = "cotfaith-cache-export"
EXPORT_VERSION = 1


class CacheToolError(Exception):
    """A problem said in one line (exit status 2)."""


# ----------------------------------------------------------------------------- helpers
def _open(path: Path, *, create: bool = False) -> sqlite3.Connection:
    """A connection to a cache file, migrated to the current schema (old files still open)."""
    if not create and not path.is_file():
        raise CacheToolError(f"{path}: no such cache file")
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=60000")
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            db.execute("PRAGMA journal_mode=WAL")
        migrate(db)
    except sqlite3.DatabaseError as e:
        db.close()
        raise CacheToolError(f"{path}: not a cotfaith cache ({e})") from None
    return db


def _size(path: Path) -> int:
    return sum(
        p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
    )


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def probe_key(name: str, identity: dict[str, Any]) -> str:
    return RequestCache._probe_key(name, identity)


def _checkpoint(db: sqlite3.Connection) -> None:
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.OperationalError:
        pass  # in use elsewhere: its last close checkpoints


# ----------------------------------------------------------------------------- stats
def stats(cache: Path) -> list[str]:
    db = _open(cache)
    try:
        rows = db.execute(
            "SELECT provider, model, COUNT(*), SUM(cost_usd), COUNT(cost_usd), "
            "MIN(created_at), MAX(created_at) FROM responses GROUP BY provider, model "
            "ORDER BY provider, model"
        ).fetchall()
        probes = db.execute("SELECT COUNT(*) FROM probes").fetchone()[0]
        live = db.execute(
            "SELECT COUNT(*) FROM claims WHERE expires_at >= ?", (time.time(),)
        ).fetchone()[0]
    finally:
        db.close()
    total = sum(r[2] for r in rows)
    paid = sum(r[3] or 0.0 for r in rows)
    priced = sum(r[4] for r in rows)
    out = [f"{cache}: {total} responses, {probes} probes, {_human(_size(cache))} on disk"]
    width = max([len(f"{p}/{m}") for p, m, *_ in rows] + [len("backend/model")])
    out.append(f"{'backend/model':<{width}}  {'rows':>8}  {'cost paid (USD)':>16}  from .. to")
    for provider, model, n, cost, n_priced, first, last in rows:
        money = f"{cost:.4f}" if n_priced else "-"
        if n_priced and n_priced < n:
            money += f" ({n_priced} priced)"
        days = f"{time.strftime('%Y-%m-%d', time.localtime(first))} .. " + time.strftime(
            "%Y-%m-%d", time.localtime(last)
        )
        out.append(f"{provider + '/' + model:<{width}}  {n:>8}  {money:>16}  {days}")
    note = f"total paid: ${paid:.4f} over {priced} priced calls"
    if priced < total:
        note += f" ({total - priced} calls carry no cost: unpriced, or cached before costs were"
        note += " recorded)"
    out.append(note)
    if live:
        out.append(f"{live} requests are being computed right now (live claims)")
    return out


# ----------------------------------------------------------------------------- export
def _run_keys(run_dir: Path) -> list[str]:
    """Every request key behind a run's records, in first-use order."""
    path = run_dir / "records.jsonl"
    if not path.is_file():
        raise CacheToolError(f"{path}: no records here (is this a cotfaith run folder?)")
    keys: dict[str, None] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line of a killed run
            for call in row.get("call_log") or ():
                if call.get("key"):
                    keys.setdefault(call["key"], None)
            if row.get("request_key"):
                keys.setdefault(row["request_key"], None)
    return list(keys)


def _run_caches(run_dir: Path, cache: Path | None) -> list[Path]:
    """Where a run's responses are: --cache, else the run's own cache (run.json) and shard."""
    found: list[Path] = []
    if cache is not None:
        found.append(cache)
    else:
        run_json = run_dir / "run.json"
        if run_json.is_file():
            recorded = json.loads(run_json.read_text(encoding="utf-8")).get("cache_path")
            if recorded and Path(recorded).is_file():
                found.append(Path(recorded))
        if not found and Path(DEFAULT_CACHE).is_file():
            found.append(Path(DEFAULT_CACHE))
    shard = run_dir / "cache_shard.sqlite"
    if shard.is_file():
        found.append(shard)
    if not found:
        raise CacheToolError(f"{run_dir}: cannot find the run's cache; name it with --cache")
    return found


def export(run_dir: Path, out: Path, cache: Path | None) -> list[str]:
    keys = _run_keys(run_dir)
    caches = _run_caches(run_dir, cache)
    dbs = [_open(c) for c in caches]
    rows: dict[str, tuple] = {}
    try:
        for db in dbs:
            for i in range(0, len(keys), 500):
                chunk = [k for k in keys[i : i + 500] if k not in rows]
                if not chunk:
                    continue
                marks = ",".join("?" * len(chunk))
                for row in db.execute(
                    "SELECT key, provider, model, request, response, created_at, cost_usd "
                    f"FROM responses WHERE key IN ({marks})",
                    chunk,
                ):
                    rows[row[0]] = row
        identities = {
            json.dumps(json.loads(r[3])["backend"], sort_keys=True) for r in rows.values()
        }
        probes: dict[str, tuple] = {}
        for db in dbs:
            for row in db.execute("SELECT key, name, backend, value, created_at FROM probes"):
                if row[2] in identities:
                    probes.setdefault(row[0], row)
    finally:
        for db in dbs:
            db.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        header = {
            "type": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "run": str(run_dir),
            "responses": len(rows),
            "probes": len(probes),
        }
        fh.write(json.dumps(header) + "\n")
        for key in keys:
            if key in rows:
                k, provider, model, request, response, created, cost = rows[key]
                entry = {
                    "type": "response",
                    "key": k,
                    "provider": provider,
                    "model": model,
                    "request": json.loads(request),
                    "response": json.loads(response),
                    "created_at": created,
                    "cost_usd": cost,
                }
                fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        for k, name, backend, value, created in probes.values():
            entry = {
                "type": "probe",
                "key": k,
                "name": name,
                "backend": json.loads(backend),
                "value": json.loads(value),
                "created_at": created,
            }
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
    lines = [f"{out}: {len(rows)} responses and {len(probes)} probes behind {run_dir}"]
    missing = len(keys) - len(rows)
    if missing:
        lines.append(
            f"warning: {missing} of the run's {len(keys)} calls are not in "
            f"{', '.join(map(str, caches))}: a replay of the export will miss them"
        )
    return lines


# ----------------------------------------------------------------------------- import / merge
def _read_export(path: Path) -> Iterator[tuple[str, tuple]]:
    """Rows of an export file as ("response" | "probe", row), each key checked."""
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                raise CacheToolError(f"{path}:{i}: not JSON ({e.msg})") from None
            kind = entry.get("type")
            if i == 1 and kind != EXPORT_FORMAT:
                raise CacheToolError(f"{path}:1: not a cotfaith-cache export")
            if kind == EXPORT_FORMAT:
                continue
            try:
                if kind == "response":
                    stored = entry["request"]
                    key = request_key(stored["backend"], stored["request"])
                    row = (
                        key,
                        str(entry["provider"]),
                        str(entry["model"]),
                        json.dumps(stored, ensure_ascii=False),
                        json.dumps(entry["response"], ensure_ascii=False),
                        float(entry["created_at"]),
                        entry.get("cost_usd"),
                    )
                elif kind == "probe":
                    key = probe_key(entry["name"], entry["backend"])
                    row = (
                        key,
                        entry["name"],
                        json.dumps(entry["backend"], sort_keys=True),
                        json.dumps(entry["value"]),
                        float(entry["created_at"]),
                    )
                else:
                    raise CacheToolError(f"{path}:{i}: unknown entry type {kind!r}")
            except (KeyError, TypeError, ValueError) as e:
                raise CacheToolError(f"{path}:{i}: malformed {kind} entry ({e})") from None
            if key != entry.get("key"):
                raise CacheToolError(
                    f"{path}:{i}: the key does not match the stored request (edited?)"
                )
            yield kind, row


_INSERT_RESPONSE = (
    "INSERT OR IGNORE INTO responses "
    "(key, provider, model, request, response, created_at, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_PROBE = (
    "INSERT OR IGNORE INTO probes (key, name, backend, value, created_at) VALUES (?, ?, ?, ?, ?)"
)


def _counts(db: sqlite3.Connection, schema: str = "main") -> tuple[int, int]:
    return (
        db.execute(f"SELECT COUNT(*) FROM {schema}.responses").fetchone()[0],
        db.execute(f"SELECT COUNT(*) FROM {schema}.probes").fetchone()[0],
    )


def _merge_export(db: sqlite3.Connection, path: Path) -> tuple[int, int, int]:
    """(responses read, responses added, probes added) from an export file."""
    read = 0
    before = _counts(db)
    db.execute("BEGIN IMMEDIATE")
    try:
        for kind, row in _read_export(path):
            if kind == "response":
                read += 1
                db.execute(_INSERT_RESPONSE, row)
            else:
                db.execute(_INSERT_PROBE, row)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    after = _counts(db)
    return read, after[0] - before[0], after[1] - before[1]


def _merge_sqlite(db: sqlite3.Connection, path: Path) -> tuple[int, int, int]:
    """(responses read, responses added, probes added) from another cache file or shard. The
    source is only read (a killed shard's WAL is recovered on attach); older files without
    `cost_usd` or `probes` merge too."""
    try:
        db.execute("ATTACH DATABASE ? AS src", (str(path),))
    except sqlite3.DatabaseError as e:
        raise CacheToolError(f"{path}: cannot open ({e})") from None
    try:
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM src.sqlite_master")}
        except sqlite3.DatabaseError as e:
            raise CacheToolError(f"{path}: not a cotfaith cache ({e})") from None
        if "responses" not in tables:
            raise CacheToolError(f"{path}: not a cotfaith cache (no responses table)")
        columns = {r[1] for r in db.execute("PRAGMA src.table_info(responses)")}
        cost = "cost_usd" if "cost_usd" in columns else "NULL"
        read = db.execute("SELECT COUNT(*) FROM src.responses").fetchone()[0]
        before = _counts(db)
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT OR IGNORE INTO main.responses "
                "(key, provider, model, request, response, created_at, cost_usd) "
                f"SELECT key, provider, model, request, response, created_at, {cost} "
                "FROM src.responses"
            )
            if "probes" in tables:
                db.execute(
                    "INSERT OR IGNORE INTO main.probes (key, name, backend, value, created_at) "
                    "SELECT key, name, backend, value, created_at FROM src.probes"
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        after = _counts(db)
    finally:
        db.execute("DETACH DATABASE src")
    return read, after[0] - before[0], after[1] - before[1]


def merge(sources: list[Path], into: Path) -> list[str]:
    for src in sources:
        if not src.is_file():
            raise CacheToolError(f"{src}: no such file")
        if src.resolve() == into.resolve():
            raise CacheToolError(f"{src}: cannot merge a cache into itself")
    db = _open(into, create=True)
    lines = []
    try:
        for src in sources:
            if src.suffix == ".jsonl":
                read, added, probes = _merge_export(db, src)
            else:
                read, added, probes = _merge_sqlite(db, src)
            lines.append(
                f"{src}: {read} responses, {added} new, {read - added} already held; "
                f"{probes} new probes"
            )
        total = _counts(db)[0]
        _checkpoint(db)  # the file alone holds everything (read-only readers see it all)
    finally:
        db.close()
    lines.append(f"{into}: {total} responses")
    return lines


# ----------------------------------------------------------------------------- prune
def prune(
    cache: Path, model: str | None, older_than: float | None, dry_run: bool, vacuum: bool
) -> list[str]:
    if model is None and older_than is None:
        raise CacheToolError("prune: say what to remove: --model NAME and/or --older-than DAYS")
    if older_than is not None and older_than < 0:
        raise CacheToolError(f"prune: --older-than must be >= 0 days, got {older_than}")
    where, args = [], []
    if model is not None:
        where.append("model = ?")
        args.append(model)
    if older_than is not None:
        where.append("created_at < ?")
        args.append(time.time() - older_than * 86400)
    clause = " AND ".join(where)
    db = _open(cache)
    try:
        n = db.execute(f"SELECT COUNT(*) FROM responses WHERE {clause}", args).fetchone()[0]
        if dry_run:
            return [f"{cache}: would remove {n} responses (dry run: nothing removed)"]
        db.execute(f"DELETE FROM responses WHERE {clause}", args)
        line = f"{cache}: removed {n} responses"
        if vacuum:
            before = _size(cache)
            _checkpoint(db)
            try:
                db.execute("VACUUM")
                line += f"; file {_human(before)} -> {_human(_size(cache))}"
            except sqlite3.OperationalError as e:
                line += f"; not compacted ({e})"
        return [line]
    finally:
        db.close()


# ----------------------------------------------------------------------------- check
def check(cache: Path, limit: int = 5) -> tuple[bool, list[str]]:
    db = _open(cache)
    problems: list[str] = []
    try:
        integrity = [r[0] for r in db.execute("PRAGMA integrity_check")]
        if integrity != ["ok"]:
            problems += [f"integrity: {m}" for m in integrity]
        n = 0
        for key, provider, model, request, response in db.execute(
            "SELECT key, provider, model, request, response FROM responses"
        ):
            n += 1
            try:
                stored = json.loads(request)
                identity = stored["backend"]
                if request_key(identity, stored["request"]) != key:
                    problems.append(f"response {key[:16]}: key does not recompute from its request")
                elif (str(identity.get("provider")), str(identity.get("model"))) != (
                    provider,
                    model,
                ):
                    problems.append(f"response {key[:16]}: provider/model columns disagree")
                json.loads(response)
            except (ValueError, KeyError, TypeError) as e:
                problems.append(f"response {key[:16]}: unreadable ({e})")
        p = 0
        for key, name, backend, value in db.execute("SELECT key, name, backend, value FROM probes"):
            p += 1
            try:
                if probe_key(name, json.loads(backend)) != key:
                    problems.append(f"probe {key[:16]} ({name}): key does not recompute")
                json.loads(value)
            except (ValueError, TypeError) as e:
                problems.append(f"probe {key[:16]} ({name}): unreadable ({e})")
    finally:
        db.close()
    if problems:
        shown = problems[:limit]
        more = f" (and {len(problems) - limit} more)" if len(problems) > limit else ""
        return False, [f"{cache}: {len(problems)} problems{more}", *shown]
    return True, [f"{cache}: ok ({n} responses and {p} probes; every key recomputes)"]


# ----------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cotfaith-cache",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_cache(sp: argparse.ArgumentParser, default: str | None = DEFAULT_CACHE) -> None:
        sp.add_argument(
            "--cache",
            type=Path,
            default=None if default is None else Path(default),
            help=f"the cache file (default: {default or 'the run’s own cache'})",
        )

    sp = sub.add_parser("stats", help="rows per backend/model, size on disk, cost paid")
    with_cache(sp)
    sp = sub.add_parser("export", help="the calls behind a run's records, as JSON lines")
    sp.add_argument("run_dir", type=Path)
    sp.add_argument("out", type=Path)
    with_cache(sp, None)
    sp = sub.add_parser("import", help="add an export file to a cache")
    sp.add_argument("file", type=Path)
    with_cache(sp)
    sp = sub.add_parser("merge", help="fold caches, shards or exports into one cache")
    sp.add_argument("sources", type=Path, nargs="+")
    sp.add_argument("--into", type=Path, required=True, help="the cache to merge into")
    sp = sub.add_parser("prune", help="remove responses of a model and/or older than N days")
    with_cache(sp)
    sp.add_argument("--model", help="the model name as stored (see stats)")
    sp.add_argument("--older-than", type=float, metavar="DAYS")
    sp.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    sp.add_argument("--vacuum", action="store_true", help="compact the file afterwards")
    sp = sub.add_parser("check", help="integrity check; every key recomputes from its request")
    with_cache(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    status = 0
    try:
        if args.command == "stats":
            lines = stats(args.cache)
        elif args.command == "export":
            lines = export(args.run_dir, args.out, args.cache)
        elif args.command == "import":
            lines = merge([args.file], args.cache)
        elif args.command == "merge":
            lines = merge(args.sources, args.into)
        elif args.command == "prune":
            lines = prune(args.cache, args.model, args.older_than, args.dry_run, args.vacuum)
        else:
            ok, lines = check(args.cache)
            status = 0 if ok else 1
    except CacheToolError as e:
        print(f"cotfaith-cache: error: {e}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as e:
        print(f"cotfaith-cache: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    for line in lines:
        print(line, file=sys.stderr if line.startswith("warning:") else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())
