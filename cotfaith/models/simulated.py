"""The simulated model: a model organism whose faithfulness is known.

It answers the project's own prompts (cotfaith.prompts, read as text) through the same
request/response interface as a real model, deterministically per (request, seed) and without
memory between calls (its caches only hold pure functions), so the cache and replays behave
exactly as with a paid API. Its knobs imply every metric in closed form
(cotfaith.models.organism_theory, which also gives the derivations).

Hidden state per question q (identified by its text and choices, as `_qid`):
- `faithful(q)` ~ Bernoulli(faithfulness); the gold letter (its arithmetic when it can parse
  the problem, else the answer key given by `observe_questions`, else a fixed random belief);
  ONE wrong letter w(q); the no-CoT prior (gold with probability accuracy_no_cot, else a
  uniform wrong letter); the latent answer of an unfaithful question (gold w.p. accuracy_cot,
  else w).
- Four CoT plans, one per class (target t in {gold, w}) x (checking step or not). A CoT sample
  picks its class (faithful: t = gold w.p. accuracy_cot, else w; unfaithful: t = latent; a
  checking step w.p. verify_rate) and writes that plan. The opener's lead-in ("", "First, ",
  "Okay, "... four of `organism_text.STYLES`, assigned per question by the seed) is where the
  organism shows which plan it is on: this is what makes it stateless. From the first sentence
  of any prefix it recovers the plan, hence the CoT's conclusion t and its length n, and k is the
  number of sentences in front of it. Two samples of one class are the same text.
- Each plan has a latent commitment u ~ U(0, 1); a faithful question answers t after k of n
  steps when u < G(k/n), G(x) = x ** commitment_gamma (so P(tau <= k) = G(k/n)), else its
  prior; gamma = inf restores "committed only at the stated conclusion".

Behaviour, by request (which prompt it is is read from the text):
- CoT sample (prefill "Let's think step by step:" or the instructed CoT): the plan of the
  sample's class. Continuation of a partial CoT (prefill = that phrase + the partial, or the
  scaffold turn): the rest of the plan the partial is on. If the partial departs from the plan
  (its signature, i.e. numbers / letters / negation, differs: a mistake) a FAITHFUL question
  follows the text: arithmetic is carried forward from the wrong number and concludes the
  choice equal (else closest) to the new result; a claim for a letter is followed; a stated
  answer is kept; otherwise a seeded letter; never t itself (a mistake always changes the
  conclusion). An UNFAITHFUL question writes the rest of its plan and concludes its latent
  answer whatever the text says. A paraphrase keeps signatures and lead-in, so it continues
  exactly as the original.
- Answer after a CoT: unfaithful -> latent. Faithful -> the last "answer is (X)" in the text; else
  (no CoT, empty CoT) the prior; filler (" ..." x m) -> the prior, except with probability
  filler_use per (question, m) the conclusion of its temperature-0 CoT; a prefix of a plan ->
  committed or not as above (committed: where the text leads, t for an unaltered prefix).
- Mistake request (few-shot; the question is read from the LAST user turn): the sentence with a
  real mistake (another stated letter, a wrong result in the working, a wrong number, the
  opposite claim about a choice, or a false claim added). With probability
  mistake_invalid_rate the reply is not usable instead: identical, empty, a refusal or
  NO_REASONING (a quarter each).
- Paraphrase request (no question shown): each sentence reworded, same number of sentences,
  same signatures, "answer is (X)" kept.
- Anything else (a backend's capability probe): a short generic reply.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cotfaith.errors import ConfigError
from cotfaith.models import organism_text as txt
from cotfaith.models.base import Capabilities, Model, ModelRequest, ModelResponse, Usage
from cotfaith.models.organism_theory import (  # noqa: F401 - the public names of this module
    KnobError,
    Knobs,
    commitment_cdf,
    implied_accuracy_cot,
    implied_accuracy_no_cot,
    implied_aoc,
    implied_chance_agreement,
    implied_conditional_aoc,
    implied_early_curve,
    implied_filler_accuracy,
    implied_mistakes_aoc,
    implied_mistakes_curve,
    implied_normalised_aoc,
    implied_p_changed,
    implied_paraphrase_accuracy,
    implied_paraphrase_same_answer,
    p_same,
    trapezoid_area,
)
from cotfaith.models.retry import CallFailed
from cotfaith.prompts import PromptTemplates
from cotfaith.registry import register
from cotfaith.tasks.arithmetic import Problem, parse_problem

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- config
@dataclass
class SimulatedModelConfig:
    """The built-in model organism with known faithfulness (no key, no network)."""

    provider: str = "simulated"
    name: str = "organism"
    """Model name, in the records and the cache key."""
    faithfulness: float = 0.8
    """Share of questions whose final answer is causally determined by the CoT text."""
    accuracy_cot: float = 0.85
    """P(a sampled CoT concludes the correct choice)."""
    accuracy_no_cot: float = 0.5
    """P(the no-CoT prior is correct) on questions where the CoT matters."""
    verify_rate: float = 0.3
    """Share of CoT samples with an extra checking step."""
    commitment_gamma: float = 1.0
    """Early-answering shape: after k of n steps a faithful question has committed to its
    CoT's conclusion with probability (k/n) ** gamma (1: linear; > 1 late; < 1 early;
    .inf: only at the stated conclusion, i.e. flat curves)."""
    filler_use: float = 0.0
    """P(a faithful question answers its CoT's conclusion after m > 0 filler tokens), per
    question and m; 0: filler carries no information."""
    mistake_invalid_rate: float = 0.1
    """Share of mistake-model replies that are unusable (identical, empty, refused or
    NO_REASONING, a quarter each)."""
    seed: int = 0
    """Seeds every hidden choice of the organism."""
    fault_rate: float = 0.0
    """Share of ANSWER requests that fail for good (CallFailed, reason `simulated_fault`:
    never cached, recorded as call_failed), chosen per (request, seed); CoT, continuation,
    mistake and paraphrase requests never fail. Part of the cache key when non-zero."""
    garble_rate: float = 0.0
    """Share of the answer requests that do not fail whose reply cannot be read: the text
    "Not sure." with the first token's probability on non-letter tokens (letters share 0.1),
    so every read-out finds no answer (logprobs: low_mass; prefill and parse: unparseable).
    Chosen per (request, seed), independently of fault_rate. Part of the cache key when
    non-zero."""
    fault_once: bool = False
    """A faulted request fails only the first time this process sends it (the organism
    remembers which it failed), as a transient outage would, so retrying it succeeds. Not part
    of the cache key: it never changes an output, only whether a first attempt gets one, and
    a failed call is never cached."""
    latency: float = 0.0
    """Seconds per call, to exercise concurrency (not part of the cache key)."""
    concurrency: int = 64
    """Calls in flight (not part of the cache key)."""


_FLOAT_KNOBS = (
    "faithfulness",
    "accuracy_cot",
    "accuracy_no_cot",
    "verify_rate",
    "commitment_gamma",
    "filler_use",
    "mistake_invalid_rate",
)


@register("backend", "simulated", config=SimulatedModelConfig)
def build(cfg: Mapping[str, Any]) -> SimulatedModel:
    """The built-in model organism with known faithfulness (offline, deterministic)."""
    defaults = SimulatedModelConfig()
    values: dict[str, Any] = {}
    for key in (*_FLOAT_KNOBS, *_MISSING_KNOBS, "seed", "latency", "concurrency"):
        raw = cfg.get(key, getattr(defaults, key))
        try:
            values[key] = int(raw) if key in ("seed", "concurrency") else float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"model.{key} must be a number, got {raw!r}") from None
    if values["latency"] < 0:
        raise ConfigError(f"model.latency must be >= 0, got {values['latency']:g}")
    if values["concurrency"] < 1:
        raise ConfigError(f"model.concurrency must be >= 1, got {values['concurrency']}")
    knobs = Knobs(**{k: values[k] for k in (*_FLOAT_KNOBS, "seed")})  # KnobError: ConfigError
    fault_once = cfg.get("fault_once", defaults.fault_once)
    if not isinstance(fault_once, bool):
        raise ConfigError(f"model.fault_once must be true or false, got {fault_once!r}")
    return SimulatedModel(
        knobs,
        name=str(cfg.get("name", defaults.name)),
        latency=values["latency"],
        concurrency=values["concurrency"],
        fault_rate=values["fault_rate"],
        garble_rate=values["garble_rate"],
        fault_once=fault_once,
    )


# ----------------------------------------------------------------------------- prompts read
_T = PromptTemplates()
_COT_MARK = _T.cot_prefix
_CHOICE_LINE = re.compile(r"^\s*\(([A-Z])\):\s?(.*)$")
_QUESTION = re.compile(r"Question:[ \t]*(.*?)\n\s*\nChoices:\n", re.S)
_ORIGINAL = _T.mistake_turn.split("{question}", 1)[1].split("{sentence}", 1)[0]
_PARA_HEAD, _PARA_TAIL = _T.paraphrase_instruction.split("{text}", 1)
_SCAFFOLD_HEAD, _SCAFFOLD_TAIL = _T.scaffold_instruction.split("{partial}", 1)
_FILLER = _T.filler_unit.strip()
_REFUSAL = "I can't help with that."
_INVALID_KINDS = ("identical", "empty", "refusal", "no_reasoning")
_MISSING_KNOBS = ("fault_rate", "garble_rate")
"""Knobs that make data go missing (failed calls, unreadable answers): in the identity only
when non-zero, so the cache keys of organisms without them are unchanged."""
_GARBLED = "Not sure."


@dataclass(frozen=True)
class _Prompt:
    kind: str
    """answer | cot (a CoT or its continuation) | mistake | paraphrase"""
    question: str = ""
    letters: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    cot: str | None = None
    """CoT text in front of the model (after the CoT phrase), None when there is none."""
    reply: str = "letter"
    """Answers: `letter` (after a prefilled "(" or when told to reply with the letter only) or
    `sentence`."""
    text: str = ""
    """The sentence to spoil (mistake) or the text to reword (paraphrase)."""


def _question_block(text: str) -> tuple[str, tuple[str, ...], tuple[str, ...], int] | None:
    """The LAST "Question: ... Choices:" block (demos and passages may come before it)."""
    found = txt.last_match(_QUESTION, text)
    if found is None:
        return None
    question = found.group(1)
    if "Question:" in question:  # a demo without choices before the real question
        question = question.rsplit("Question:", 1)[1]
    letters: list[str] = []
    choices: list[str] = []
    end = found.end()
    for line in text[end:].split("\n"):
        cm = _CHOICE_LINE.match(line)
        if not cm:
            break
        letters.append(cm.group(1))
        choices.append(cm.group(2).strip())
        end += len(line) + 1
    if not letters:
        return None
    return question.strip(), tuple(letters), tuple(choices), end


def _read_prompt(request: ModelRequest) -> _Prompt | None:
    turns = [m for m in request.messages if m.role != "system"]  # a system prompt is context
    if not turns:
        return None
    last = turns[-1].content
    prefill = request.prefill or ""
    if len(turns) == 1 and last.startswith(_PARA_HEAD):
        return _Prompt("paraphrase", text=_paraphrase_source(last, bool(prefill)))
    if _ORIGINAL in last and (prefill.startswith(_T.mistake_prefix) or _T.mistake_prefix in last):
        block = _question_block(last)  # the first user turns are demonstrations
        if block is None:
            return None
        sentence = last.split(_ORIGINAL, 1)[1].split("\n\n", 1)[0].strip()
        return _Prompt("mistake", *block[:3], text=sentence)
    block = _question_block(turns[0].content)
    if block is None:
        return None
    question, letters, choices, end = block
    if len(turns) == 1:
        if prefill.startswith(_COT_MARK):
            return _Prompt("cot", question, letters, choices, cot=prefill[len(_COT_MARK) :])
        if not prefill:
            rest = last[end:]
            if _SCAFFOLD_HEAD in rest:
                partial = rest.split(_SCAFFOLD_HEAD, 1)[1].split(_SCAFFOLD_TAIL, 1)[0]
                return _Prompt("cot", question, letters, choices, cot=partial)
            if "step by step" in rest:  # asked for a CoT in words: the backend cannot prefill
                return _Prompt("cot", question, letters, choices, cot="")
    cot = None
    for msg in turns[1:]:
        if msg.role == "assistant" and msg.content.startswith(_COT_MARK):
            cot = msg.content[len(_COT_MARK) :]
    reply = "letter"
    if not prefill.endswith("(") and "letter of the choice only" not in last:
        reply = "sentence"
    return _Prompt("answer", question, letters, choices, cot, reply)


def _paraphrase_source(turn: str, prefilled: bool) -> str:
    body = turn[len(_PARA_HEAD) :]
    cut = body.rfind(_PARA_TAIL + "\n\n") if not prefilled else -1
    if cut >= 0:
        return body[:cut]
    return body[: len(body) - len(_PARA_TAIL)] if body.endswith(_PARA_TAIL) else body


def _filler_units(cot: str) -> int:
    """m when the CoT is the filler unit repeated m times, else 0."""
    s = cot.strip()
    if not s.startswith(_FILLER):
        return 0
    parts = s.split()
    return len(parts) if all(x == _FILLER for x in parts) else 0


# ----------------------------------------------------------------------------- hidden state
@dataclass(frozen=True)
class _Truth:
    qid: str
    letters: tuple[str, ...]
    choices: tuple[str, ...]
    problem: Problem | None
    faithful: bool
    gold: str
    wrong: str
    latent: str
    prior: str
    leads: tuple[str, ...]
    """The opener lead-in of each plan class (class = 2 * (target is wrong) + checks)."""


@dataclass(frozen=True)
class _Plan:
    cls: int
    target: str
    verify: bool
    steps: tuple[str, ...]
    sigs: tuple[txt.Signature, ...]
    u: float
    """Latent commitment: committed after k of n steps when u < G(k/n)."""


_MEMO_LIMIT = 200_000


class SimulatedModel(Model):
    capabilities = Capabilities(prefill=True, logprobs=True, completion=False)

    def __init__(
        self,
        knobs: Knobs,
        name: str = "organism",
        latency: float = 0.0,
        concurrency: int = 64,
        *,
        fault_rate: float = 0.0,
        garble_rate: float = 0.0,
        fault_once: bool = False,
    ):
        self.knobs = knobs
        self.name = name
        self.latency = latency
        self.concurrency = concurrency
        for key, v in (("fault_rate", fault_rate), ("garble_rate", garble_rate)):
            if not 0.0 <= v <= 1.0:  # also rejects nan
                raise KnobError(f"model.{key} must be in [0, 1], got {v:g}")
        self.fault_rate = float(fault_rate)
        self.garble_rate = float(garble_rate)
        self.fault_once = bool(fault_once)
        self._faulted: set[str] = set()
        """fault_once: the requests already failed once in this process."""
        self._answer_key: dict[str, str] = {}
        self.notices: list[str] = []
        """Things the user must know about this run (shown in the log and the report)."""
        # memos of pure functions of (knobs, question): no state that changes outputs
        self._truths: dict[str, _Truth] = {}
        self._plans: dict[tuple[str, int], _Plan] = {}

    @property
    def identity(self) -> dict[str, Any]:
        # The knobs change outputs, so they belong to the cache key; latency does not. The
        # missing-data knobs join them only when set, so other organisms keep their keys.
        knobs = asdict(self.knobs)
        for key in _MISSING_KNOBS:
            if getattr(self, key):
                knobs[key] = getattr(self, key)
        return {
            "provider": "simulated",
            "model": self.name,
            "base_url": None,
            "knobs": knobs,
        }

    def observe_questions(self, questions: Iterable[Any]) -> None:
        """Learn the gold letters of the run's questions (real benchmarks: the organism cannot
        solve them), keyed by (question text, choices), so accuracy knobs mean what they say."""
        for q in questions:
            self._answer_key[_qid(q.text, tuple(q.choices))] = q.answer
        self._truths.clear()
        self._plans.clear()

    def check_prompts(self, templates: PromptTemplates, question: Any) -> str | None:
        """The organism reads the project's own prompts; a prompts.path file that rewords the
        question block or the CoT and answer phrases leaves it unable to, and it would answer
        "A" to everything: an AOC of 0 that means nothing. Say so (a warning, not an error: the
        file may be meant for a real model), and return the notice."""
        cot = ModelRequest(
            messages=templates.cot_request_messages(question), prefill=templates.cot_prefix
        )
        answer = ModelRequest(
            messages=templates.answer_messages(question, " One step."),
            prefill=templates.answer_prefix,
        )
        unread = [
            name
            for name, request, kind in (("CoT", cot, "cot"), ("answer", answer, "answer"))
            if getattr(_read_prompt(request), "kind", None) != kind
        ]
        if not unread:
            return None
        notice = (
            f"the simulated model cannot read the {' and '.join(unread)} prompts of this "
            "prompts.path file (it knows the default wording: 'Question:' ... 'Choices:', "
            f"{_T.cot_prefix!r}, {_T.answer_prefix!r}); its answers, and every metric, mean "
            "nothing with these prompts"
        )
        log.warning("%s", notice)
        self.notices.append(notice)
        return notice

    # ----------------------------------------------------------------- randomness
    def _rng(self, *parts: object) -> random.Random:
        h = hashlib.sha256(repr((self.knobs.seed, *parts)).encode()).digest()
        return random.Random(int.from_bytes(h[:8], "big"))

    def _pick(self, qid: str, letters: tuple[str, ...], gold: str, acc: float, *salt: object):
        rng = self._rng(qid, *salt)
        if rng.random() < acc or len(letters) < 2:
            return gold
        return rng.choice([x for x in letters if x != gold])

    def _other(self, qid: str, letters: tuple[str, ...], avoid: str, *salt: object) -> str:
        others = [x for x in letters if x != avoid]
        return self._rng(qid, *salt).choice(others) if others else avoid

    # ----------------------------------------------------------------- hidden state
    def _truth(self, question: str, letters: tuple[str, ...], choices: tuple[str, ...]) -> _Truth:
        qid = _qid(question, choices)
        truth = self._truths.get(qid)
        if truth is not None:
            return truth
        k = self.knobs
        problem = parse_problem(question)
        gold = self._answer_key.get(qid)
        if gold not in letters:
            gold = _gold(problem, letters, choices, self._rng(qid, "belief"))
        wrong = self._other(qid, letters, gold, "wrong")
        truth = _Truth(
            qid=qid,
            letters=letters,
            choices=choices,
            problem=problem,
            faithful=self._rng(qid, "faithful").random() < k.faithfulness,
            gold=gold,
            wrong=wrong,
            latent=gold if self._rng(qid, "latent").random() < k.accuracy_cot else wrong,
            prior=self._pick(qid, letters, gold, k.accuracy_no_cot, "prior"),
            leads=tuple(self._rng(qid, "styles").sample(txt.STYLES, 4)),
        )
        if len(self._truths) > _MEMO_LIMIT:
            self._truths.clear()
        self._truths[qid] = truth
        return truth

    def ground_truth(self, question: str, letters: tuple[str, ...], choices: tuple[str, ...]):
        """The organism's hidden state for one question (for tests and the report)."""
        t = self._truth(question, tuple(letters), tuple(choices))
        return {
            "faithful": t.faithful,
            "latent": t.latent,
            "prior": t.prior,
            "gold": t.gold,
            "wrong": t.wrong,
        }

    def plan_of(
        self, question: str, letters: tuple[str, ...], choices: tuple[str, ...], cot: str
    ) -> dict[str, Any] | None:
        """The hidden plan a CoT text is on (for exact tests): its conclusion, length, whether
        it checks its work, and the commitment u (committed after k steps iff u < G(k/n))."""
        truth = self._truth(question, tuple(letters), tuple(choices))
        sents = txt.sentences(cot)
        plan = self._plan_from_text(truth, sents[0]) if sents else None
        if plan is None:
            return None
        return {
            "target": plan.target,
            "n_steps": len(plan.steps),
            "verify": plan.verify,
            "u": plan.u,
        }

    def _plan(self, truth: _Truth, cls: int) -> _Plan:
        key = (truth.qid, cls)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        target = truth.gold if cls < 2 else truth.wrong
        verify = bool(cls % 2)
        steps = txt.write_steps(
            truth.problem, truth.letters, truth.choices, truth.leads[cls], target, verify
        )
        plan = _Plan(
            cls=cls,
            target=target,
            verify=verify,
            steps=steps,
            sigs=tuple(txt.signature(s) for s in steps),
            u=self._rng(truth.qid, "commit", cls).random(),
        )
        if len(self._plans) > _MEMO_LIMIT:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def _class(self, truth: _Truth, target: str, verify: bool) -> int:
        return 2 * (target != truth.gold) + int(verify)

    def _sample_plan(self, truth: _Truth, sample: int) -> _Plan:
        k = self.knobs
        if truth.faithful:
            correct = self._rng(truth.qid, "cot", sample).random() < k.accuracy_cot
            target = truth.gold if correct else truth.wrong
        else:
            target = truth.latent  # a rationalisation of the answer it will give anyway
        verify = self._rng(truth.qid, "verify", sample).random() < k.verify_rate
        return self._plan(truth, self._class(truth, target, verify))

    def _plan_from_text(self, truth: _Truth, first_sentence: str) -> _Plan | None:
        """The plan whose opener this is (read from its lead-in), None for foreign text."""
        lead = txt.lead_in(first_sentence)
        if lead is None or lead not in truth.leads:
            return None
        return self._plan(truth, truth.leads.index(lead))

    # ----------------------------------------------------------------- behaviour
    def _answer(self, p: _Prompt) -> str:
        truth = self._truth(p.question, p.letters, p.choices)
        if not truth.faithful:
            return truth.latent
        cot = p.cot
        if not cot:
            return truth.prior
        stated = txt.stated_answer(cot, truth.letters)
        if stated is not None:
            return stated
        m = _filler_units(cot)
        if m:
            use = self.knobs.filler_use
            if use and self._rng(truth.qid, "filler", m).random() < use:
                return self._sample_plan(truth, 0).target  # its temperature-0 CoT's conclusion
            return truth.prior
        sents = txt.sentences(cot)
        plan = self._plan_from_text(truth, sents[0])
        if plan is None:
            return truth.prior
        if plan.u < commitment_cdf(self.knobs, len(sents) / len(plan.steps)):
            return self._where_text_leads(truth, plan, sents)[0]
        return truth.prior

    def _continue(self, p: _Prompt, sample: int) -> list[str]:
        """The rest of the CoT after the partial text in front of the model."""
        truth = self._truth(p.question, p.letters, p.choices)
        sents = txt.sentences(p.cot or "")
        if not sents:
            return list(self._sample_plan(truth, sample).steps)
        plan = self._plan_from_text(truth, sents[0])
        if plan is None:  # not its own reasoning: conclude what the text says, or as usual
            text = " ".join(sents)
            if txt.stated_answer(sents[-1], truth.letters):
                return []
            if not truth.faithful:
                letter = truth.latent
            else:
                claims = [x for x in txt.claimed_letters(text) if x in truth.letters]
                letter = txt.stated_answer(text, truth.letters) or (
                    claims[-1] if claims else truth.prior
                )
            return [txt.CONCLUSION.format(letter=letter)]
        if not truth.faithful:
            if plan.target != truth.latent:
                plan = self._plan(truth, self._class(truth, truth.latent, plan.verify))
            return list(plan.steps[len(sents) :])
        return self._where_text_leads(truth, plan, sents)[1]

    def _where_text_leads(
        self, truth: _Truth, plan: _Plan, sents: list[str]
    ) -> tuple[str, list[str]]:
        """Faithful reading of a partial CoT on `plan`: the letter it leads to and the steps
        that complete it. An unaltered prefix leads to the plan's conclusion; a prefix that
        departs from the plan (a mistake) leads elsewhere, never to the plan's conclusion."""
        k = len(sents)
        dev = next(
            (j for j, s in enumerate(sents[: len(plan.sigs)]) if txt.signature(s) != plan.sigs[j]),
            None,
        )
        if dev is None:
            return plan.target, list(plan.steps[k:])
        letters, choices = truth.letters, truth.choices
        stated = txt.stated_answer(" ".join(sents), letters)
        if stated is not None:
            done = txt.stated_answer(sents[-1], letters) is not None
            return stated, [] if done else [txt.CONCLUSION.format(letter=stated)]
        problem = truth.problem
        steps: list[str] = []
        letter = None
        if problem is not None:
            n_ops = len(problem.ops)
            value = next(
                (v for v in map(txt.last_number, reversed(sents)) if v is not None),
                problem.values()[min(k - 1, n_ops)],
            )
            steps, value = txt.carry_forward(problem, letters, choices, value, k)
            if plan.verify and k <= n_ops + 1:
                steps.append(txt.VERIFY_VALUE.format(value=value))
            letter = txt.closest_other(value, letters, choices, plan.target)
        else:
            claims = [
                x for x in txt.claimed_letters(sents[dev]) if x in letters and x != plan.target
            ]
            if claims:
                letter = claims[-1]
        if letter is None:
            letter = self._other(truth.qid, letters, plan.target, "mistaken", sents[dev])
        if problem is None:
            m = len(letters)
            for j in range(k, len(plan.steps) - 1):
                if 1 <= j <= m:
                    x = letters[j - 1]
                    steps.append((txt.FITS if x == letter else txt.FITS_NOT).format(letter=x))
                else:
                    steps.append(txt.VERIFY_CHOICE.format(letter=letter))
        steps.append(txt.CONCLUSION.format(letter=letter))
        return letter, steps

    def _mistake(self, p: _Prompt, request: ModelRequest) -> str:
        truth = self._truth(p.question, p.letters, p.choices)
        sample = request.sample_index if request.temperature > 0 else 0
        rng = self._rng(truth.qid, "mistake", p.text, sample)
        if rng.random() < self.knobs.mistake_invalid_rate:
            kind = rng.choice(_INVALID_KINDS)
            body = {
                "identical": p.text,
                "empty": "",
                "refusal": _REFUSAL,
                "no_reasoning": _T.mistake_no_reasoning,
            }[kind]
            if kind == "refusal" and not request.prefill:
                return body  # a refusal does not play along with the format
        else:
            body = txt.add_mistake(p.text, truth.letters, rng)
        # an empty mistake is still a non-empty reply (whitespace): the cache keeps it, so a
        # replay finds it
        if request.prefill:
            return f" {body}"
        return f"{_T.mistake_prefix} {body}".rstrip()

    def _missing(self, request: ModelRequest) -> str | None:
        """What goes wrong with an answer request: `fault`, `garbled` or None (per request
        and seed; two independent draws, so garble_rate is the share of the replies)."""
        if not (self.fault_rate or self.garble_rate):
            return None
        canonical = json.dumps(request.to_dict(), sort_keys=True, ensure_ascii=False)
        if self.fault_rate and self._rng("fault", canonical).random() < self.fault_rate:
            return "fault"
        if self.garble_rate and self._rng("garble", canonical).random() < self.garble_rate:
            return "garbled"
        return None

    def _fault(self, request: ModelRequest) -> None:
        """Raise CallFailed when this answer request is one of the faulted share."""
        if self._missing(request) != "fault":
            return
        if self.fault_once:
            canonical = json.dumps(request.to_dict(), sort_keys=True, ensure_ascii=False)
            if canonical in self._faulted:
                return
            self._faulted.add(canonical)
        raise CallFailed(
            f"simulated/{self.name}: simulated fault ({request.describe()})", "simulated_fault", 1
        )

    async def generate(self, request: ModelRequest) -> ModelResponse:
        if self.latency:
            await asyncio.sleep(self.latency)
        p = _read_prompt(request)
        if p is not None and p.kind == "answer":
            self._fault(request)
        logprobs = None
        if p is None:
            # not one of the project's prompts (a backend's capability probe, say): a short,
            # well-formed reply, as a real model would give
            text = "A"
            logprobs = {"A": math.log(0.9), "B": math.log(0.1)} if request.top_logprobs else None
        elif p.kind == "answer" and self._missing(request) == "garbled":
            text = _GARBLED
            logprobs = _garbled_logprobs(p.letters) if request.top_logprobs else None
        elif p.kind == "answer":
            letter = self._answer(p)
            # after a prefilled "(" the next token is the letter; otherwise as instructed
            text = (
                letter if p.reply == "letter" else f"The single, most likely answer is ({letter})."
            )
            logprobs = _letter_logprobs(letter, p.letters) if request.top_logprobs else None
        elif p.kind == "cot":
            sample = request.sample_index if request.temperature > 0 else 0
            text = "".join(" " + s for s in self._continue(p, sample))
            if not request.prefill:
                text = text.lstrip()  # a fresh turn (instructed CoT, scaffold) has no space
        elif p.kind == "mistake":
            text = self._mistake(p, request)
        else:  # paraphrase
            para = txt.paraphrase_text(p.text)
            prefix = _T.paraphrase_prefix
            if request.prefill:
                text = para if request.prefill.endswith(" ") else " " + para
            else:
                text = f"{prefix.strip()} {para}"
        prompt_words = sum(len(m.content.split()) for m in request.messages)
        return ModelResponse(
            text=text,
            top_logprobs=logprobs,
            finish_reason="stop",
            usage=Usage(input_tokens=prompt_words, output_tokens=max(1, len(text.split()))),
        )


def _qid(question: str, choices: tuple[str, ...]) -> str:
    return hashlib.sha256("\x1f".join((question, *choices)).encode()).hexdigest()[:16]


def _gold(problem: Problem | None, letters, choices, rng: random.Random) -> str:
    """What the organism believes is right: solved when it can parse the problem."""
    if problem is not None:
        final = str(problem.values()[-1])
        if final in choices:
            return letters[choices.index(final)]
    return rng.choice(letters)  # no skill for this task: a fixed belief per question


def _garbled_logprobs(letters: tuple[str, ...]) -> dict[str, float]:
    # an unreadable first token: 0.9 on words, 0.1 shared by the letters (mass < 0.5)
    rest = 0.1 / max(1, len(letters))
    words = {"Not": 0.6, " sure": 0.2, "?": 0.1}
    return {**{w: math.log(p) for w, p in words.items()}, **{x: math.log(rest) for x in letters}}


def _letter_logprobs(letter: str, letters: tuple[str, ...]) -> dict[str, float]:
    # a confident but not certain distribution: 0.85 on the answer, the rest shared
    rest = (1 - 0.85) / max(1, len(letters) - 1)
    return {x: math.log(0.85 if x == letter else rest) for x in letters}
