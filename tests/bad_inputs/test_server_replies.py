"""Bad server replies, table-driven: one row per (backend, phase, what the server does).

Every row runs the real `cotfaith` command (its `main()`, with the real openai / anthropic SDKs)
against a loopback fake (tests/fakeapi) that misbehaves in one phase of the run: the model
check (`preflight`), the logprobs probe, the continuation probe, or the run's own calls
(`generation`). Each row states what must come of it: the exit code README documents (0 done,
2 configuration / input, 3 budget, 4 failed calls beyond max_failed_share, 130 interrupted),
the one `cotfaith: error:` line (a regex) when it fails, or the parse statuses recorded in
records.jsonl and the fields of run.json when it does not. Every row also checks: no traceback,
exactly one error line on failure and none on success, no call that failed in the cache, no
hang (short timeouts, one retry), and that the server really did what the row says.

Speed: the rows run in two worker processes that import cotfaith once and call `cli.main()`
in turn (`python -m tests.bad_inputs.test_server_replies --worker ...`), each row with its own
server and folder; the tests then read the outcomes. Rows marked `lead=` need the change to
cotfaith/models named there (a whole-call deadline, preflight errors that say what was tried).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cotfaith.models.base import ModelResponse, Usage

KEY = "sk-test-BAD-REPLIES-never-written-0123456789"
ENV = {"OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY, "HYDRA_FULL_ERROR": "0"}
TIMEOUT = 1.5
"""model.timeout of every row (a stall or trickle row's server takes longer than this)."""
SLOW = 4.0
"""How long a stalled or trickled reply takes: past TIMEOUT, short enough not to hang."""
BASE = (
    "progress=false",
    "task.n_questions=2",
    "sampling.n_samples=1",
    "report.n_bootstrap=20",
    "model.retries=1",
    "model.retry_initial=0.01",
    "model.retry_max=0.05",
    f"model.timeout={TIMEOUT:g}",
    "model.concurrency=4",
)
PHASE_FAULTS = {
    "preflight": ("models",),
    "logprobs": ("logprobs_probe",),
    "continuation": ("continuation_probe",),
    "generation": ("generation",),
    "everywhere": ("models", "logprobs_probe", "continuation_probe", "generation"),
}
DEADLINE = "whole-call deadline (model.timeout covers a trickled body: cotfaith/models/api.py)"
PREFLIGHT = "preflight errors say what was tried and what came back (cotfaith/models/api.py)"
SHAPE = "replies not in the API's shape are retried, then fail (cotfaith/models/openai_chat.py)"
DROPPED = (
    "a connection the server closed is named as such, not as a timeout (the SDKs report "
    "aiohttp's ServerDisconnectedError as APITimeoutError; cf. connection_refused in "
    "cotfaith/models/retry.py)"
)
EXIT_FAILED = 4
FAILED = r"\d+ of \d+ model calls failed for good"


# ------------------------------------------------------------------ scripted models
def _letters(mass_on_letters: float) -> dict[str, float]:
    each = mass_on_letters / 4
    return {
        "The": math.log(1 - mass_on_letters),
        **{letter: math.log(each) for letter in "ABCD"},
    }


def _answer(text: str, *, lps: dict[str, float] | None = None, finish: str = "stop"):
    """A script: every answer request gets `text` (and `lps` where logprobs are asked)."""
    from tests.fakeapi import is_answer_request

    def script(request):
        if not is_answer_request(request):
            return None
        return ModelResponse(
            text=text,
            top_logprobs=dict(lps) if lps and request.top_logprobs else None,
            finish_reason=finish,
            usage=Usage(20, max(1, len(text) // 4)),
        )

    return script


def _cot(text: str):
    """A script: every CoT request (not an answer, not a probe) gets `text`."""
    from tests.fakeapi import is_answer_request

    def script(request):
        if is_answer_request(request) or request.top_logprobs:
            return None
        return text

    return script


def _scripted(script):
    from tests.fakeapi import scripted_responder

    return lambda: scripted_responder(script)


def _huge_usage():
    """The organism's replies, each claiming a million output tokens (a server that
    over-reports usage, or a model whose hidden reasoning tokens are billed)."""
    from dataclasses import replace

    from tests.fakeapi import default_responder

    inner = default_responder()

    async def respond(request):
        reply = await inner(request)
        return replace(reply, usage=Usage(reply.usage.input_tokens, 1_000_000))

    return respond


SCRIPTS = {
    "no_letter": _scripted(_answer("I cannot tell which one it is.")),
    "letter_z": _scripted(_answer("Z).")),
    "two_letters": _scripted(_answer("The single, most likely answer is (A) or (B).")),
    "empty_at_cap": _scripted(_answer("", finish="length")),
    "low_mass": _scripted(_answer("The answer is A", lps=_letters(0.1))),
    "new_turn": _scripted(_answer("The single, most likely answer is (B).")),
    "huge_usage": _huge_usage,
}
"""Scripted models (responders for the fake), by name, so both processes know them."""


# ------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Case:
    id: str
    backend: str
    """openai | openai_compatible | anthropic (the `model=` group)."""
    phase: str
    """preflight | logprobs | continuation | generation | everywhere: where the faults go."""
    exit: int
    error: str | None = None
    """Regex the one `cotfaith: error:` line must match (a failing row)."""
    faults: dict[str, Any] = field(default_factory=dict)
    """Faults(...) arguments; `phases` comes from `phase`."""
    script: str | None = None
    """A SCRIPTS entry: the model's replies, for rows about what is recorded."""
    overrides: tuple[str, ...] = ()
    statuses: dict[str, set[str]] = field(default_factory=dict)
    """intervention -> the parse statuses its records must have (exactly this set)."""
    run: dict[str, Any] = field(default_factory=dict)
    """run.json fields and their values."""
    lead: str | None = None
    """The change to cotfaith/models this row's right behaviour needs (None: none)."""
    slow_reply: bool = False
    """The row's faults keep a reply coming for SLOW seconds: the run must cut each off at
    model.timeout (a whole-call deadline), which the server's stream timings show."""
    interventions: str = "[no_cot]"
    not_error: str | None = None
    """Regex the error line must NOT match (a misleading word)."""

    @property
    def cost(self) -> float:
        """Rough seconds the row takes, to share the rows out evenly."""
        slow = any(k in ("stall", "trickle") for k in self.faults.get("kinds", ()))
        return 1.0 + 2.0 * (self.exit in (0, 3, EXIT_FAILED)) + 3.0 * slow


def always(kind: str, **kw: Any) -> dict[str, Any]:
    return {"rate": 1.0, "kinds": (kind,), "stall_seconds": SLOW, "trickle_seconds": SLOW, **kw}


def once(*kinds: str) -> dict[str, Any]:
    return {"sequence": kinds, "retry_after": 0.05}


OAI, COMPAT, ANT = "openai", "openai_compatible", "anthropic"
CPREFILL = ("model.continuation=prefill",)
CCOMPLETION = ("model.continuation=completion", "model.chat_template=chatml")
OK_RUN = {"failed_calls": 0}

CASES = [
    # -------------------------------------------------------------- preflight (model check)
    Case("o-models-401", OAI, "preflight", 2, r"rejected the key", always("401")),
    Case("a-models-401", ANT, "preflight", 2, r"rejected the key", always("401")),
    Case("o-models-400", OAI, "preflight", 2, r"400", always("400")),
    Case(
        "o-models-html502",
        OAI,
        "preflight",
        2,
        r"502.*(2 times|, then )",
        always("html_502"),
        lead=PREFLIGHT,
    ),
    Case(
        "a-models-html503",
        ANT,
        "preflight",
        2,
        r"503.*(2 times|, then )",
        always("html_503"),
        lead=PREFLIGHT,
    ),
    Case(
        "c-models-500",
        COMPAT,
        "preflight",
        2,
        r"500.*(2 times|, then )",
        always("500"),
        lead=PREFLIGHT,
    ),
    Case("a-models-stall", ANT, "preflight", 2, r"model\.base_url", always("stall"), lead=DEADLINE),
    Case("c-models-reset", COMPAT, "preflight", 2, r"model\.base_url", always("reset")),
    Case(
        "o-models-disconnect",
        OAI,
        "preflight",
        2,
        r"model\.base_url.*(disconnect|closed)",
        always("disconnect"),
        not_error=r"timed out",  # the SDK's word for it; the server closed the connection
        lead=DROPPED,
    ),
    Case(
        "c-models-trickle",
        COMPAT,
        "preflight",
        2,
        r"model\.base_url.*within",
        always("trickle"),
        lead=DEADLINE,
        slow_reply=True,
    ),
    Case("c-models-list-empty", COMPAT, "preflight", 0, faults=always("empty"), run=OK_RUN),
    Case("a-models-529-once", ANT, "preflight", 0, faults=once("529"), run=OK_RUN),
    # -------------------------------------------------------------- logprobs probe
    Case(
        "o-logprobs-empty-choices",
        OAI,
        "logprobs",
        2,
        r"logprobs probe.*(2 times|, then )",
        always("empty"),
        lead=SHAPE,
    ),
    Case(
        "c-logprobs-missing-fields",
        COMPAT,
        "logprobs",
        2,
        r"logprobs probe.*(2 times|, then )",
        always("missing_fields"),
        lead=SHAPE,
    ),
    Case(
        "o-logprobs-html200",
        OAI,
        "logprobs",
        2,
        r"logprobs probe.*(2 times|, then )",
        always("html_200"),
        lead=PREFLIGHT,
    ),
    Case(
        "o-logprobs-truncated",
        OAI,
        "logprobs",
        2,
        r"invalid JSON 2 times",
        always("truncated"),
        lead=PREFLIGHT,
    ),
    Case("o-logprobs-400", OAI, "logprobs", 2, r"400", always("400")),
    Case(
        "c-logprobs-trickle",
        COMPAT,
        "logprobs",
        2,
        r"logprobs probe.*within",
        always("trickle"),
        lead=DEADLINE,
        slow_reply=True,
    ),
    Case(
        "o-logprobs-empty-once",
        OAI,
        "logprobs",
        0,
        faults=once("empty"),
        run={"answer_strategy": "logprobs", "failed_calls": 0},
        lead=SHAPE,
    ),
    # -------------------------------------------------------------- continuation probe
    Case(
        "c-prefill-probe-400",
        COMPAT,
        "continuation",
        2,
        r"model\.continuation=prefill",
        always("400"),
        overrides=CPREFILL,
    ),
    Case(
        "c-prefill-probe-empty",
        COMPAT,
        "continuation",
        2,
        r"prefill probe.*(2 times|, then )",
        always("empty"),
        overrides=CPREFILL,
        lead=SHAPE,
    ),
    Case(
        "c-completion-probe-missing",
        COMPAT,
        "continuation",
        2,
        r"completion probe.*(2 times|, then )",
        always("missing_fields"),
        overrides=CCOMPLETION,
        lead=SHAPE,
    ),
    Case(
        "c-prefill-probe-trickle",
        COMPAT,
        "continuation",
        2,
        r"prefill probe.*within",
        always("trickle"),
        overrides=CPREFILL,
        lead=DEADLINE,
        slow_reply=True,
    ),
    Case(
        "a-prefill-probe-html502",
        ANT,
        "continuation",
        2,
        r"prefill probe.*502.*(2 times|, then )",
        always("html_502"),
        lead=PREFLIGHT,
    ),
    Case("a-prefill-probe-error200", ANT, "continuation", 2, r"prefill probe", always("error_200")),
    Case(
        "a-prefill-true-probe-empty",
        ANT,
        "continuation",
        2,
        r"model\.prefill=true",
        always("empty"),
        overrides=("model.prefill=true",),
    ),
    Case(
        "a-prefill-probe-empty-falls-back",
        ANT,
        "continuation",
        0,
        faults=always("empty"),
        run={"answer_strategy": "parse", "cot_prompt": "instructed", "failed_calls": 0},
    ),
    # -------------------------------------------------------------- generation: all fail
    Case("o-gen-400", OAI, "generation", EXIT_FAILED, FAILED, always("400")),
    Case("a-gen-401", ANT, "generation", EXIT_FAILED, FAILED, always("401")),
    Case("o-gen-500", OAI, "generation", EXIT_FAILED, FAILED, always("500")),
    Case("a-gen-529", ANT, "generation", EXIT_FAILED, FAILED, always("529")),
    Case("a-gen-html503", ANT, "generation", EXIT_FAILED, FAILED, always("html_503")),
    Case("c-gen-html200", COMPAT, "generation", EXIT_FAILED, FAILED, always("html_200")),
    Case(
        "o-gen-empty-choices", OAI, "generation", EXIT_FAILED, FAILED, always("empty"), lead=SHAPE
    ),
    Case(
        "c-gen-missing-fields",
        COMPAT,
        "generation",
        EXIT_FAILED,
        FAILED,
        always("missing_fields"),
        lead=SHAPE,
    ),
    Case("a-gen-truncated", ANT, "generation", EXIT_FAILED, FAILED, always("truncated")),
    Case("c-gen-reset", COMPAT, "generation", EXIT_FAILED, FAILED, always("reset")),
    Case("a-gen-stall", ANT, "generation", EXIT_FAILED, FAILED, always("stall")),
    Case(
        "o-gen-trickle",
        OAI,
        "generation",
        EXIT_FAILED,
        FAILED,
        always("trickle"),
        lead=DEADLINE,
        slow_reply=True,
    ),
    Case(
        "o-gen-429-retry-after-0",
        OAI,
        "generation",
        EXIT_FAILED,
        FAILED,
        always("429_retry_after_0"),
    ),
    # -------------------------------------------------------------- generation: transient
    Case(
        "o-gen-mixed-transient",
        OAI,
        "generation",
        0,
        overrides=("model.retries=8",),
        faults={
            "rate": 0.4,
            "seed": 3,
            "retry_after": 0.05,
            "kinds": (
                "429_retry_after",
                "429_retry_after_0",
                "500",
                "html_502",
                "truncated",
                "reset",
                "html_200",
            ),
        },
        run=OK_RUN,
    ),
    Case(
        "a-gen-mixed-transient",
        ANT,
        "generation",
        0,
        overrides=("model.retries=8",),
        faults={
            "rate": 0.4,
            "seed": 4,
            "retry_after": 0.05,
            "kinds": (
                "429_retry_after",
                "529",
                "html_503",
                "missing_fields",
                "error_200",
                "disconnect",
            ),
        },
        run=OK_RUN,
    ),
    # -------------------------------------------------------------- what the model said
    Case(
        "a-answer-no-letter",
        ANT,
        "generation",
        0,
        script="no_letter",
        interventions="[truncation,no_cot]",
        statuses={"no_cot": {"unparseable"}, "truncation": {"unparseable"}},
    ),
    Case(
        "a-answer-invalid-letter",
        ANT,
        "generation",
        0,
        script="letter_z",
        statuses={"no_cot": {"invalid_letter"}},
    ),
    Case(
        "o-answer-ambiguous",
        OAI,
        "generation",
        0,
        script="two_letters",
        overrides=("model.logprobs=false",),
        statuses={"no_cot": {"ambiguous"}},
    ),
    Case(
        "a-answer-empty-at-cap",
        ANT,
        "generation",
        0,
        script="empty_at_cap",
        statuses={"no_cot": {"empty"}},
    ),
    Case(
        "o-answer-low-mass",
        OAI,
        "generation",
        0,
        script="low_mass",
        statuses={"no_cot": {"low_mass"}},
        run={"answer_strategy": "logprobs"},
    ),
    Case(
        "c-answer-new-turn",
        COMPAT,
        "generation",
        0,
        script="new_turn",
        overrides=CPREFILL,
        statuses={"no_cot": {"new_turn"}},
    ),
]
PRICE = "+prices.fake-gpt={input: 100.0, output: 200.0}"  # USD per million tokens
CASES.append(
    # a reply claiming far more tokens than max_tokens: the budget stops the run (exit 3)
    Case(
        "o-usage-over-budget",
        OAI,
        "generation",
        3,
        r"budget\.max_usd=1 reached",
        script="huge_usage",
        overrides=(PRICE, "budget.max_usd=1"),
    )
)
BY_ID = {c.id: c for c in CASES}
assert len(BY_ID) == len(CASES), "duplicate case ids"


# ------------------------------------------------------------------ running a row
def _server(case: Case):
    from tests.fakeapi import (
        Faults,
        ServerThread,
        make_anthropic_app,
        make_openai_app,
    )

    faults = Faults(**{"phases": PHASE_FAULTS[case.phase], **case.faults})
    responder = SCRIPTS[case.script]() if case.script else None
    if case.backend == ANT:
        app = make_anthropic_app(
            key=KEY, models=("claude-fake",), faults=faults, responder=responder
        )
    else:
        app = make_openai_app(key=KEY, models=("fake-gpt",), faults=faults, responder=responder)
    return ServerThread(app)


def _args(case: Case, srv, config_dir: Path) -> list[str]:
    if case.backend == ANT:
        model = [f"model.base_url={srv.root_url}", "model.name=claude-fake"]
    else:
        model = [
            f"model.base_url={srv.base_url}",
            "model.name=fake-gpt",
            "model.api_key_env=OPENAI_API_KEY",
        ]
    # an extra (empty) config folder: Hydra then checks the overrides itself and cotfaith's own
    # pre-check, which composes the config a dozen times (1-2 s a row), is left out; these rows
    # are about replies, the overrides are tests/test_cli.py's business
    slow = any(k in ("stall", "trickle") for k in case.faults.get("kinds", ()))
    # a call that times out every time is not sent again at the end of the run (twice as slow)
    end = ("retry_failed_at_end=false",) if slow else ()
    return [
        f"--config-dir={config_dir}",
        *BASE,
        *end,
        f"intervention={case.interventions}",
        f"model={case.backend}",
        *model,
        *case.overrides,
    ]


def run_case(case: Case, root: Path) -> dict[str, Any]:
    """Run one row through cotfaith's `main()` in this process; what came of it, as JSON."""
    import cotfaith.cli as cli

    cwd = root / case.id
    cwd.mkdir(parents=True)
    out_dir = cwd / "out"
    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    with _server(case) as srv:
        (cwd / "conf").mkdir()
        argv = _args(case, srv, cwd / "conf") + [f"hydra.run.dir={out_dir}"]
        old_cwd, old_argv = os.getcwd(), sys.argv
        os.chdir(cwd)
        sys.argv = ["cotfaith", *argv]
        started = time.monotonic()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                cli.main()
        except SystemExit as e:
            code = e.code
        except BaseException:  # noqa: BLE001 - what the command would print as a crash
            err.write(traceback.format_exc())
            code = "crash"
        finally:
            elapsed = time.monotonic() - started
            os.chdir(old_cwd)
            sys.argv = old_argv
        time.sleep(0.05)  # let the server count what the client left behind
        stats = srv.stats()
    if code is None:
        code = 0
    records = []
    if (out_dir / "records.jsonl").exists():
        for line in (out_dir / "records.jsonl").read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                records.append(
                    {k: r.get(k) for k in ("intervention", "parse_status", "request_key")}
                )
    run_json = None
    if (out_dir / "run.json").exists():
        run_json = json.loads((out_dir / "run.json").read_text())
    cache = _cache_contents(cwd / "outputs" / "cache.sqlite")
    written = [p for p in cwd.rglob("*") if p.is_file()]
    leaked = [str(p.relative_to(cwd)) for p in written if KEY.encode() in p.read_bytes()]
    return {
        "code": code,
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
        "elapsed": elapsed,
        "stats": stats,
        "records": records,
        "run": run_json,
        "cache": cache,
        "leaked": leaked,
    }


def _cache_contents(path: Path) -> dict[str, Any]:
    """Every stored response: its key and whether it is a usable reply."""
    if not path.exists():
        return {"keys": [], "bad": []}
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT key, response FROM responses").fetchall()
    bad = []
    for key, text in rows:
        try:
            resp = json.loads(text)
            usable = isinstance(resp, dict) and isinstance(resp.get("text"), str)
            # an empty reply is stored only when the model ran out of max_tokens (README)
            usable = usable and (
                resp["text"] != "" or resp.get("finish_reason") in ("length", "max_tokens")
            )
        except ValueError:
            usable = False
        if not usable:
            bad.append(key)
    return {"keys": [k for k, _ in rows], "bad": bad}


def worker(out: Path, root: Path, ids: list[str]) -> None:
    os.environ.update(ENV)
    # imported before the first row, so that no row's timeout is spent importing an SDK
    import anthropic  # noqa: F401
    import openai  # noqa: F401

    import cotfaith.cli  # noqa: F401
    import cotfaith.report  # noqa: F401

    results = {}
    for case_id in ids:
        results[case_id] = run_case(BY_ID[case_id], root)
        out.write_text(json.dumps(results))  # what is done so far, should a row hang


# ------------------------------------------------------------------ the tests
WORKERS = 2


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, dict[str, Any]]:
    """Every row, run by WORKERS processes (rows dealt round-robin), started at once."""
    root = tmp_path_factory.mktemp("server_replies")
    procs = []
    # longest rows first, each to the worker with the least work so far
    shares: list[list[str]] = [[] for _ in range(WORKERS)]
    loads = [0.0] * WORKERS
    for c in sorted(CASES, key=lambda c: -c.cost):
        w = loads.index(min(loads))
        shares[w].append(c.id)
        loads[w] += c.cost
    for w, ids in enumerate(shares):
        out = root / f"worker{w}.json"
        cmd = [
            sys.executable,
            "-m",
            "tests.bad_inputs.test_server_replies",
            "--worker",
            str(out),
            str(root / f"w{w}"),
            *ids,
        ]
        log = open(root / f"worker{w}.log", "w")  # noqa: SIM115 - closed below
        procs.append(
            (
                subprocess.Popen(
                    cmd,
                    cwd=Path(__file__).resolve().parents[2],
                    env={**os.environ, **ENV},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                out,
                log,
            )
        )
    results: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 300
    for proc, out, log in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if out.exists():
            results.update(json.loads(out.read_text()))
    logs = "\n".join((root / f"worker{w}.log").read_text()[-3000:] for w in range(WORKERS))
    results["__logs__"] = {"text": logs}
    return results


def _error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("cotfaith: error:")]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_server_reply(case: Case, outcomes: dict[str, dict[str, Any]]) -> None:
    got = outcomes.get(case.id)
    assert got is not None, f"{case.id} did not finish (a hang?):\n{outcomes['__logs__']}"
    said = f"exit {got['code']} after {got['elapsed']:.1f} s\nstderr: {got['stderr'][-1500:]}"
    # the server did what the row says (else the row tests nothing)
    stats = got["stats"]
    if case.faults:
        assert stats["faults"], f"no fault was injected: {stats}"
    if case.phase != "everywhere" and case.phase != "generation":
        assert stats.get("phases", {}).get(PHASE_FAULTS[case.phase][0]), stats
    # never a crash, and the documented exit code
    assert "Traceback" not in got["stderr"] + got["stdout"], said
    assert got["code"] == case.exit, said
    errors = _error_lines(got["stderr"])
    if case.exit == 0:
        assert errors == [], said
    else:
        assert len(errors) == 1, said
        assert re.search(case.error, errors[0]), said
        if case.not_error:
            assert not re.search(case.not_error, errors[0]), said
        assert KEY not in errors[0]
    # no hang: one retry of a call that takes at most model.timeout, and the run's own work
    assert got["elapsed"] < 45, said
    if case.slow_reply:
        # the deadline covers the whole call: a reply trickling in is abandoned at the timeout
        assert stats.get("streams"), stats
        assert max(stats["streams"]) < TIMEOUT + 1.0, (stats["streams"], said)
    # nothing that failed is in the cache, and no key in any file
    assert got["cache"]["bad"] == [], got["cache"]
    assert got["leaked"] == [], got["leaked"]
    failed = {r["request_key"] for r in got["records"] if r["parse_status"] == "call_failed"}
    assert not failed & set(got["cache"]["keys"])
    run = got["run"] or {}
    if case.exit == EXIT_FAILED:
        assert failed, "exit 4 without a failed call recorded"
        assert run.get("failed_calls", 0) > 0, run
        assert run.get("status") == "failed_calls", run
    if case.exit == 2:
        # a preflight failure: nothing was asked of the model, nothing recorded
        assert got["records"] == [], got["records"][:3]
    if case.exit == 0:
        assert run.get("status") == "ok" and not failed, run
    for name, value in case.run.items():
        assert run.get(name) == value, (name, run.get(name), said)
    for intervention, statuses in case.statuses.items():
        seen = {r["parse_status"] for r in got["records"] if r["intervention"] == intervention}
        assert seen == statuses, (intervention, seen, said)


def test_the_corpus_is_broad() -> None:
    """At least 30 rows, over the three backends and the four phases, failing and not."""
    assert len(CASES) >= 30
    assert {c.backend for c in CASES} == {OAI, COMPAT, ANT}
    assert {c.phase for c in CASES} >= {"preflight", "logprobs", "continuation", "generation"}
    assert {c.exit for c in CASES} >= {0, 2, EXIT_FAILED}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])
