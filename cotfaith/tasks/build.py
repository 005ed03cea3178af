"""Turn a loader's `Item`s into `Question`s: stable ids, a seeded subsample that stays stable as
the file grows, held-apart or published few-shot demonstrations (never the question asked),
and a seeded choice shuffle.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cotfaith.errors import ConfigError
from cotfaith.tasks.base import Question, content_id
from cotfaith.tasks.common import FileTaskConfig, Item, RecordLog

ANSWER_LINE = "The single, most likely answer is ({letter})."
"""Ends a demonstration this project renders (the answer phrase of Lanham et al. 2023)."""


@dataclass(frozen=True)
class DemoSet:
    """Demonstrations published with a task: an optional header (the task's instruction) and
    one block per solved example."""

    blocks: tuple[str, ...]
    header: str = ""
    sep: str = "\n\n"
    """Between two demonstrations."""
    header_sep: str = "\n\n"
    """Between the header and the first demonstration."""
    trailer: str = ""
    """After the last demonstration (a published separator before the question)."""

    def render(self, blocks: Sequence[str]) -> str:
        body = self.sep.join(blocks)
        if not body:
            return self.header
        head = self.header + self.header_sep if self.header else ""
        return head + body + self.trailer


def rank(seed: int, qid: str, salt: str = "") -> str:
    """A record's place in the seeded order: a hash of (seed, id), so a record's rank does not
    depend on the other records and adding records never reshuffles the existing ones."""
    return hashlib.sha256(f"{salt}\x1f{seed}\x1f{qid}".encode()).hexdigest()


def assign_ids(items: Sequence[Item]) -> list[str]:
    """Source id where there is one, else a content hash; prefixed by the subtask; repeats
    (the same record twice in a file) get `#2`, `#3`... in file order."""
    seen: dict[str, int] = defaultdict(int)
    out = []
    for it in items:
        base = it.source_id or content_id(f"{it.context or ''}\x1e{it.text}", tuple(it.choices))
        qid = f"{it.subtask}/{base}" if it.subtask else base
        seen[qid] += 1
        out.append(qid if seen[qid] == 1 else f"{qid}#{seen[qid]}")
    return out


def _norm(text: str | None) -> str:
    text = re.sub(r"(?m)(^|\s)[QA]:", " ", text or "")  # demo markup ("Q:", "A:") is not content
    return re.sub(r"[^0-9a-z]+", "", text.lower())


# where the question of a published demonstration ends: its options, or the start of the answer
_DEMO_QUESTION_END = re.compile(
    r"\n\s*(?:Options:|Answer choices:|A:|Please verbalize|Let's think step by step)"
)
_DEMO_CHOICE = re.compile(r"^\s*(?:\([A-Z]\)|-)\s?(.+?)\s*$", re.M)


def same_question(
    text: str, choices: Sequence[str], other: str, other_choices: Sequence[str]
) -> bool:
    """Same text (up to layout and case), and the same set of choices where both have some:
    a question often shares its wording with others ("Which sentence has the correct adjective
    order:") and differs only in its choices."""
    if _norm(text) != _norm(other):
        return False
    if not choices or not other_choices:
        return True
    return {_norm(c) for c in choices} == {_norm(c) for c in other_choices}


def leaks(text: str, choices: Sequence[str], block: str) -> bool:
    """Whether a published demonstration is the question asked: the demo's question (up to its
    options or its answer) is the same text, with the same choices where the demo lists them."""
    m = _DEMO_QUESTION_END.search(block)
    head = block[: m.start()] if m else block
    shown = _DEMO_CHOICE.findall(block[m.start() :]) if m else []
    cut = _DEMO_QUESTION_END.search(block[m.end() :]) if m else None
    if cut is not None and shown:  # options end where the answer begins
        shown = _DEMO_CHOICE.findall(block[m.start() : m.end() + cut.start()])
    return same_question(text, choices, head, shown)


def shuffled(item: Item, qid: str, seed: int) -> tuple[list[str], int]:
    order = list(range(len(item.choices)))
    random.Random(f"shuffle\x1f{seed}\x1f{qid}").shuffle(order)
    return [item.choices[i] for i in order], order.index(item.gold)


def render_demo(item: Item, choices: Sequence[str], gold: int, task: str) -> str:
    """A solved example in the project's question format."""
    from cotfaith.prompts import PromptTemplates  # lazy: prompts imports tasks.base

    letter = string.ascii_uppercase[gold]
    q = Question("demo", item.text, tuple(choices), letter, task, context=item.context)
    return PromptTemplates().render_question(q) + "\n\n" + ANSWER_LINE.format(letter=letter)


def finish(
    items: Sequence[Item],
    cfg: FileTaskConfig,
    records: RecordLog,
    *,
    demo_pool: Sequence[Item] | None = None,
    published: dict[str | None, DemoSet] | None = None,
) -> list[Question]:
    """Questions from the items of a task.

    Demonstrations come from `published` (per subtask) if the task publishes them, else from
    `demo_pool` (a held-apart split, per subtask), else from records of the same file held
    apart: per subtask the `n_shots` records ranked first by a seeded hash, which are then
    never asked as questions.
    """
    records.report()
    task = cfg.name
    ids = assign_ids(items)
    candidates = list(zip(ids, items, strict=True))
    n_shots = cfg.n_shots
    own_demos: dict[str | None, list[tuple[str, Item]]] = defaultdict(list)
    if published is None and n_shots is None:
        raise ConfigError(
            f"task.n_shots: null means every published demonstration, and {task} publishes "
            "none; give a number"
        )
    if published is None and n_shots:
        if demo_pool is not None:
            pool = list(zip(assign_ids(demo_pool), demo_pool, strict=True))
        else:
            pool = candidates
        groups: dict[str | None, list[tuple[str, Item]]] = defaultdict(list)
        for qid, it in pool:
            groups[it.subtask].append((qid, it))
        for sub, members in groups.items():
            members.sort(key=lambda m: rank(cfg.seed, m[0], "demo"))
            own_demos[sub] = members[:n_shots]
        if demo_pool is None:
            held = {qid for members in own_demos.values() for qid, _ in members}
            candidates = [c for c in candidates if c[0] not in held]
    candidates.sort(key=lambda c: rank(cfg.seed, c[0]))
    if cfg.n_questions is not None:
        candidates = candidates[: cfg.n_questions]

    questions = []
    for qid, it in candidates:
        choices, gold = list(it.choices), it.gold
        if cfg.shuffle_choices:
            choices, gold = shuffled(it, qid, cfg.seed)
        meta: dict[str, Any] = {
            "split": cfg.split,
            "skipped_records": records.skipped,
            "source_answer": string.ascii_uppercase[it.gold],
            **it.meta,
        }
        demos: str | None = None
        if published is not None:
            demos = _published_demos(published.get(it.subtask), it, n_shots, meta)
        elif n_shots:
            shown = []
            for did, d in own_demos.get(it.subtask, []):
                if did == qid or (
                    _norm(d.context) == _norm(it.context)
                    and same_question(d.text, d.choices, it.text, it.choices)
                ):
                    continue  # the same question twice in a file: never show it solved
                dchoices, dgold = (
                    shuffled(d, did, cfg.seed)
                    if cfg.shuffle_choices
                    else (
                        d.choices,
                        d.gold,
                    )
                )
                shown.append(render_demo(d, dchoices, dgold, task))
            demos = "\n\n".join(shown) or None
            meta["n_demos"] = len(shown)
        questions.append(
            Question(
                id=qid,
                text=it.text,
                choices=tuple(choices),
                answer=string.ascii_uppercase[gold],
                task=task,
                meta=meta,
                context=it.context,
                subtask=it.subtask,
                source_id=it.source_id,
                demos=demos,
            )
        )
    return questions


def _published_demos(
    demo_set: DemoSet | None, it: Item, n_shots: int | None, meta: dict[str, Any]
) -> str | None:
    if demo_set is None or n_shots == 0:
        meta["n_demos"] = 0
        return None
    blocks = list(demo_set.blocks if n_shots is None else demo_set.blocks[:n_shots])
    kept = [b for b in blocks if not leaks(it.text, it.choices, b)]
    meta["n_demos"] = len(kept)
    if len(kept) < len(blocks):
        meta["demos_dropped"] = len(blocks) - len(kept)  # a published demo IS this question
    return demo_set.render(kept) if kept or demo_set.header else None
