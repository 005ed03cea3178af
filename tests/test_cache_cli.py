"""`cotfaith-cache`: stats, export/import, merge, prune, check; one-line errors."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cotfaith.cache import CachedModel, RequestCache
from cotfaith.cache_cli import main
from cotfaith.pricing import Price
from tests.helpers import comparable, load_records, run_cli
from tests.test_cache import CountingBackend, req


class Priced(CountingBackend):
    async def generate(self, request):
        response = await super().generate(request)
        response.usage.input_tokens, response.usage.output_tokens = 1000, 0
        return response


def fill(path: Path, name: str, prompts: list[str], price: Price | None = None) -> list[str]:
    cache = RequestCache(path)
    client = CachedModel(Priced(name=name), cache, price)
    keys = [asyncio.run(client.generate(req(p)))[1] for p in prompts]
    cache.close()
    return keys


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_stats_counts_rows_per_model_size_and_cost(tmp_path, capsys):
    path = tmp_path / "c.sqlite"
    fill(path, "m-a", ["1", "2", "3"], Price(input=1.0, output=0.0))  # $0.001 each
    fill(path, "m-b", ["1", "2"])
    code, out, err = cli(capsys, "stats", "--cache", path)
    assert code == 0, err
    assert "5 responses" in out and "KB on disk" in out
    line_a = next(x for x in out.splitlines() if x.startswith("fake/m-a"))
    line_b = next(x for x in out.splitlines() if x.startswith("fake/m-b"))
    assert line_a.split()[1] == "3" and "0.0030" in line_a
    assert line_b.split()[1] == "2" and " - " in line_b
    assert "total paid: $0.0030 over 3 priced calls" in out


def _records(run_dir: Path, keys: list[str]) -> None:
    run_dir.mkdir(parents=True)
    with (run_dir / "records.jsonl").open("w") as fh:
        for k in keys:
            fh.write(json.dumps({"request_key": k, "call_log": [{"key": k}]}) + "\n")


def test_export_then_import_is_the_runs_calls_and_nothing_else(tmp_path, capsys):
    cache = tmp_path / "c.sqlite"
    wanted = fill(cache, "m", ["a", "b"])
    fill(cache, "m", ["unrelated"])
    _records(tmp_path / "run", [*wanted, "f" * 64])  # one call the cache does not hold
    out_file = tmp_path / "share.jsonl"
    code, out, err = cli(capsys, "export", tmp_path / "run", out_file, "--cache", cache)
    assert code == 0 and "2 responses" in out
    assert "1 of the run's 3 calls are not in" in err
    lines = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert lines[0]["type"] == "cotfaith-cache-export"
    assert [x["key"] for x in lines[1:]] == wanted

    fresh = tmp_path / "fresh.sqlite"
    code, out, _ = cli(capsys, "import", out_file, "--cache", fresh)
    assert code == 0 and "2 new" in out
    replay = RequestCache(fresh, "replay")
    backend = Priced(name="m")
    for p in ("a", "b"):
        hit, _ = asyncio.run(CachedModel(backend, replay).generate(req(p)))
        assert hit.cached
    assert backend.calls == 0
    replay.close()
    # importing twice adds nothing
    assert "0 new, 2 already held" in cli(capsys, "import", out_file, "--cache", fresh)[1]


def test_an_edited_export_is_refused_in_one_line(tmp_path, capsys):
    cache = tmp_path / "c.sqlite"
    keys = fill(cache, "m", ["a"])
    _records(tmp_path / "run", keys)
    out_file = tmp_path / "share.jsonl"
    cli(capsys, "export", tmp_path / "run", out_file, "--cache", cache)
    lines = out_file.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["request"]["request"]["messages"][0]["content"] = "tampered"
    out_file.write_text("\n".join([lines[0], json.dumps(entry)]) + "\n")
    code, _, err = cli(capsys, "import", out_file, "--cache", tmp_path / "x.sqlite")
    assert code == 2 and "does not match the stored request" in err
    assert len(err.strip().splitlines()) == 1


def test_merge_adds_only_what_is_missing(tmp_path, capsys):
    a, b, into = tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "into.sqlite"
    fill(a, "m", ["1", "2", "3"])
    fill(b, "m", ["3", "4"])
    code, out, _ = cli(capsys, "merge", a, b, "--into", into)
    assert code == 0
    assert "3 new, 0 already held" in out and "1 new, 1 already held" in out
    with sqlite3.connect(into) as db:
        keys = [r[0] for r in db.execute("SELECT key FROM responses")]
    assert len(keys) == len(set(keys)) == 4
    code, _, err = cli(capsys, "merge", a, "--into", a)
    assert code == 2 and "into itself" in err


def test_prune_by_model_and_age_with_dry_run(tmp_path, capsys):
    path = tmp_path / "c.sqlite"
    fill(path, "old-model", ["1", "2"])
    fill(path, "new-model", ["1", "2", "3"])
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE responses SET created_at = ? WHERE key IN "
            "(SELECT key FROM responses WHERE model = 'new-model' LIMIT 1)",
            (time.time() - 40 * 86400,),
        )
    code, out, _ = cli(capsys, "prune", "--cache", path, "--model", "old-model", "--dry-run")
    assert code == 0 and "would remove 2" in out
    held = RequestCache(path, "replay")
    assert len(held) == 5
    held.close()
    code, out, _ = cli(capsys, "prune", "--cache", path, "--model", "old-model", "--vacuum")
    assert code == 0 and "removed 2" in out
    code, out, _ = cli(capsys, "prune", "--cache", path, "--older-than", "30")
    assert code == 0 and "removed 1" in out
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 2
    code, _, err = cli(capsys, "prune", "--cache", path)
    assert code == 2 and "--model" in err


def test_check_finds_a_row_whose_key_does_not_recompute(tmp_path, capsys):
    path = tmp_path / "c.sqlite"
    keys = fill(path, "m", ["1", "2"])
    cache = RequestCache(path)
    cache.put_probe("logprobs", {"provider": "fake", "model": "m"}, True)
    cache.close()
    code, out, _ = cli(capsys, "check", "--cache", path)
    assert code == 0 and "ok (2 responses and 1 probes" in out
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE responses SET request = replace(request, '\"1\"', '\"one\"') WHERE key = ?",
            (keys[0],),
        )
    code, out, _ = cli(capsys, "check", "--cache", path)
    assert code == 1 and keys[0][:16] in out and "does not recompute" in out


def test_errors_are_one_line_without_traceback(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_text("this is not a database, just text " * 50)
    for argv in (
        ["stats", "--cache", str(tmp_path / "missing.sqlite")],
        ["check", "--cache", str(junk)],
        ["export", str(tmp_path), str(tmp_path / "x.jsonl")],
        ["merge", str(junk), "--into", str(tmp_path / "into.sqlite")],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "cotfaith.cache_cli", *argv], capture_output=True, text=True
        )
        assert proc.returncode == 2, (argv, proc.stderr)
        assert proc.stderr.startswith("cotfaith-cache: error: "), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_an_exported_run_replays_from_a_fresh_cache(tmp_path):
    small = ("task.n_questions=5", "sampling.n_samples=2", "report.n_bootstrap=20")
    run_cli(tmp_path, *small, "hydra.run.dir=orig")
    fill(tmp_path / "outputs" / "cache.sqlite", "unrelated", ["x"])
    proc = subprocess.run(
        [sys.executable, "-m", "cotfaith.cache_cli", "export", "orig", "share.jsonl"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "cotfaith.cache_cli", "import", "share.jsonl"]
        + ["--cache", "reviewer.sqlite"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(tmp_path / "reviewer.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM responses WHERE model='unrelated'").fetchone() == (
            0,
        )
    run_cli(
        tmp_path, *small, "cache.mode=replay", "cache.path=reviewer.sqlite", "hydra.run.dir=rev"
    )
    assert comparable(load_records(tmp_path / "rev")) == comparable(load_records(tmp_path / "orig"))
