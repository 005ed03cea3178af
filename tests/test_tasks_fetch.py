"""Downloads: the pinned published file fetched into the data folder from a loopback server that
serves ../shared/data (never the internet), checked by sha256, reused afterwards; a corrupt
download is refused and not kept; offline with no copy fails in one line saying where to put
the file."""

from __future__ import annotations

import csv
import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from cotfaith.errors import ConfigError
from cotfaith.tasks import build_task
from cotfaith.tasks.fetch import sha256_of
from cotfaith.tasks.sources import PINNED


class _Server:
    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.requests: list[str] = []
        self.httpd.requests = self.requests  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


@pytest.fixture
def mirror(shared_data, monkeypatch, tmp_path):
    """A loopback server serving the shared data folder; downloads go to tmp_path/data."""
    server = _Server(shared_data)
    monkeypatch.setenv("COTFAITH_DATA_URL", server.url)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield server
    server.close()


def test_pins_match_the_shared_provenance_table(shared_data):
    with (shared_data / "SOURCES.tsv").open(newline="") as fh:
        rows = {r["path"]: r for r in csv.DictReader(fh, delimiter="\t")}
    rows.pop("mmlu/README.txt")
    assert set(PINNED) == set(rows)
    for rel, pin in PINNED.items():
        row = rows[rel]
        assert pin.sha256 == row["sha256"] and pin.size == int(row["bytes"])
        assert pin.url == (
            f"https://raw.githubusercontent.com/{row['source_repo']}/{row['commit']}/"
            f"{row['source_path']}"
        )


@pytest.mark.parametrize(
    "task,extra,files,count",
    [
        ("aqua", {}, ["aqua/dev.json"], 254),
        ("arc_easy", {}, ["arc_easy/ARC-Easy-Dev.jsonl"], 570),
        ("truthfulqa", {}, ["truthfulqa/mc_task.json"], 817),
        ("logiqa", {}, ["logiqa/Eval.txt"], 651),
        ("strategyqa", {}, ["strategyqa/dev.json"], 229),
        ("hotpotqa", {}, ["hotpotqa/hotpot_dev_distractor_v1_100.json"], 12),
        (
            "mmlu",
            {"subjects": ["anatomy", "virology"], "n_shots": 1},
            ["mmlu/val/anatomy_val.csv", "mmlu/dev/virology_dev.csv"],
            14 + 18,
        ),
        (
            "bbh",
            {"subtasks": "navigate"},
            ["bbh/bbh/navigate.json", "bbh/cot-prompts/navigate.txt"],
            250,
        ),
        (
            "bbh_turpin",
            {"subtasks": ["snarks"], "few_shot": "all_a"},
            ["bbh_turpin/snarks/val_data.json", "bbh_turpin/snarks/few_shot_prompts.json"],
            151,
        ),
    ],
)
def test_download_checks_and_reuses(mirror, tmp_path, task, extra, files, count):
    questions = build_task({"name": task, **extra})
    assert len(questions) == count
    data = tmp_path / "cache" / "cotfaith" / "data"
    for rel in files:
        assert sha256_of(data / rel) == PINNED[rel].sha256
    assert not list(data.rglob("*.part-*"))
    served = len(mirror.requests)
    assert served >= len(files)
    again = build_task({"name": task, **extra})  # from the data folder: no request
    assert [q.id for q in again] == [q.id for q in questions]
    assert len(mirror.requests) == served


def test_data_dir_and_url_from_the_config(shared_data, tmp_path, monkeypatch):
    monkeypatch.delenv("COTFAITH_DATA_URL", raising=False)
    server = _Server(shared_data)
    try:
        qs = build_task({"name": "aqua", "url": server.url + "/", "data_dir": str(tmp_path / "d")})
    finally:
        server.close()
    assert len(qs) == 254 and (tmp_path / "d" / "aqua" / "dev.json").is_file()


def test_corrupt_download_is_refused_and_not_kept(shared_data, tmp_path, monkeypatch):
    root = tmp_path / "bad-mirror"
    shutil.copytree(shared_data / "aqua", root / "aqua")
    target = root / "aqua" / "dev.json"
    target.chmod(0o644)
    target.write_bytes(target.read_bytes().replace(b"32400", b"32401", 1))
    server = _Server(root)
    data = tmp_path / "data"
    try:
        with pytest.raises(ConfigError) as e:
            build_task({"name": "aqua", "url": server.url, "data_dir": str(data)})
    finally:
        server.close()
    msg = str(e.value)
    assert "\n" not in msg
    assert PINNED["aqua/dev.json"].sha256 in msg and sha256_of(target) in msg
    assert not (data / "aqua" / "dev.json").exists()
    assert not list(data.rglob("*")) or all(p.is_dir() for p in data.rglob("*"))


def test_a_changed_local_copy_is_downloaded_again(mirror, tmp_path):
    local = tmp_path / "cache" / "cotfaith" / "data" / "aqua" / "dev.json"
    local.parent.mkdir(parents=True)
    local.write_text("{}\n")
    assert len(build_task({"name": "aqua"})) == 254
    assert sha256_of(local) == PINNED["aqua/dev.json"].sha256


def test_offline_without_a_copy_says_where_to_put_the_file(no_download):
    with pytest.raises(ConfigError) as e:
        build_task({"name": "logiqa"})
    msg = str(e.value)
    assert "\n" not in msg and "cannot download" in msg
    assert str(no_download / "logiqa" / "Eval.txt") in msg and "task.path" in msg


@pytest.mark.parametrize(
    "cfg,rel",
    [
        ({"name": "hellaswag"}, "hellaswag/hellaswag_val.jsonl"),
        ({"name": "openbookqa"}, "openbookqa/test.jsonl"),
        ({"name": "arc_challenge"}, "arc_challenge/ARC-Challenge-Test.jsonl"),
        ({"name": "aqua", "split": "test"}, "aqua/test.json"),
        ({"name": "mmlu", "split": "test"}, None),
        ({"name": "bbh", "subtasks": "geometric_shapes"}, "bbh/bbh/geometric_shapes.json"),
    ],
)
def test_unpinned_files_need_a_local_copy(no_download, cfg, rel):
    with pytest.raises(ConfigError) as e:
        build_task(cfg)
    msg = str(e.value)
    assert "\n" not in msg and "no pinned download" in msg and "task.path" in msg
    if rel:
        assert str(no_download / rel) in msg


def test_an_unpinned_file_put_in_the_data_folder_is_used(no_download):
    fixture = Path(__file__).parent / "data" / "tasks" / "hellaswag" / "hellaswag_val.jsonl"
    (no_download / "hellaswag").mkdir(parents=True)
    shutil.copy(fixture, no_download / "hellaswag" / "hellaswag_val.jsonl")
    assert len(build_task({"name": "hellaswag"})) == 5
