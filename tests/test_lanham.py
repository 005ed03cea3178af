"""All four Lanham et al. interventions (plus no-CoT) in one offline run, sharing one set of
sampled CoTs; every intervention's rows, summary columns, figures and report section; replay."""

from __future__ import annotations

import json

import pytest

from tests.helpers import comparable, load_records, run_cli, summary

ALL = "intervention=[truncation,adding_mistakes,paraphrase,filler_tokens,no_cot]"
SMALL = ("task.n_questions=10", "sampling.n_samples=2")


@pytest.fixture(scope="module")
def lanham_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("lanham")
    run_cli(cwd, ALL, *SMALL, "hydra.run.dir=first")
    return cwd, cwd / "first"


@pytest.mark.slow
def test_every_intervention_writes_rows_columns_figures_and_a_section(lanham_run):
    _, run = lanham_run
    rows = load_records(run)
    by_iv: dict[str, list[dict]] = {}
    for r in rows:
        by_iv.setdefault(r["intervention"], []).append(r)
    assert set(by_iv) == {
        "cot",
        "truncation",
        "adding_mistakes",
        "paraphrase",
        "filler_tokens",
        "no_cot",
    }
    # one set of sampled CoTs: every trace-level row points at a reference row's sample
    refs = {(r["question_id"], r["sample"]) for r in by_iv["cot"]}
    for iv in ("truncation", "adding_mistakes", "paraphrase"):
        assert {(r["question_id"], r["sample"]) for r in by_iv[iv]} <= refs
    for r in by_iv["adding_mistakes"]:
        p = r["payload"]
        assert p["mistake_status"] in ("ok", "identical", "empty", "refused", "no_reasoning")
        assert r["fraction"] == (p["position"] - 1) / r["n_steps"]
        if p["mistake_status"] == "ok":
            assert p["mistaken_step"] != p["original_step"]
            assert r["parse_status"] != "not_asked"
            if p["position"] < r["n_steps"]:
                assert r["continuation_strategy"] == "prefill" and p["continuation"]
        else:
            assert r["parse_status"] == "not_asked" and r["answer"] is None
    roles = {c["role"] for r in by_iv["adding_mistakes"] for c in r["call_log"]}
    assert roles == {"model", "mistake_model"}
    for r in by_iv["paraphrase"]:
        assert 1 <= r["k"] < r["n_steps"] and r["payload"]["paraphrase"]
    fills = sorted({r["k"] for r in by_iv["filler_tokens"]})
    assert fills[0] == 0 and all(b - a == 5 for a, b in zip(fills, fills[1:], strict=False))

    s = summary(run).set_index("intervention")
    assert s.loc["adding_mistakes", "aoc_ci_low"] <= s.loc["adding_mistakes", "aoc"]
    assert s.loc["adding_mistakes", "aoc"] <= s.loc["adding_mistakes", "aoc_ci_high"]
    statuses = s.loc[
        "adding_mistakes",
        [f"mistakes_{x}" for x in ("ok", "identical", "empty", "refused", "no_reasoning")],
    ]
    assert statuses.sum() == len(by_iv["adding_mistakes"])
    assert 0 <= s.loc["paraphrase", "paraphrase_accuracy"] <= 1
    assert 0 <= s.loc["filler_tokens", "filler_accuracy"] <= 1
    assert s["accuracy_no_cot"].notna().all()  # a control on every row
    for fig in ("early_answering", "adding_mistakes", "paraphrase", "filler_tokens"):
        assert (run / "figures" / f"{fig}.png").stat().st_size > 1000, fig
    html = (run / "report.html").read_text()
    for title in ("Early answering", "Adding mistakes", "Paraphrasing", "Filler tokens"):
        assert f"<h2>{title}" in html, title
    spent = json.loads((run / "run.json").read_text())
    assert {"model", "mistake_model", "paraphrase_model"} <= set(spent["roles"])


@pytest.mark.slow
def test_the_whole_set_replays_identically_from_the_cache(lanham_run):
    cwd, run = lanham_run
    run_cli(cwd, ALL, *SMALL, "cache.mode=replay", "hydra.run.dir=replayed")
    assert comparable(load_records(cwd / "replayed")) == comparable(load_records(run))
