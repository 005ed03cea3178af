"""Chat templates for raw-text completion (`continuation=completion`).

A raw `/v1/completions` endpoint continues any text, so a partial assistant turn can be
continued exactly: render the conversation with the model's chat template, open the assistant
turn (`add_generation_prompt`) and append the prefill. The rendering must be the model's own,
default system turn included, or completion-mode prompts differ from what the same server
renders for chat. Where the template comes from (first found wins, see `OpenAIModelConfig`):

1. `model.chat_template` naming a file: a Hugging Face `tokenizer_config.json`, a `.gguf` model
   file (its `tokenizer.chat_template` metadata) or a Jinja template file; or `chatml`;
2. with `auto` (the default): the server's own template where it exposes one (llama.cpp
   `GET /props`), then local files named by `model.name` (a model folder, a `.gguf` file, the
   Hugging Face hub cache), then the built-in ChatML (with a notice, since it is a guess).

Hugging Face templates are Jinja, rendered as `transformers` does: a sandboxed environment with
`trim_blocks` / `lstrip_blocks`, `loopcontrols`, the `raise_exception` and `strftime_now`
helpers and a `tojson` filter. The built-in ChatML `render` and `parse` are inverse, so the
loopback test servers can read a conversation back (any ChatML-based Hugging Face template,
such as SmolLM2's, parses too: its default system turn comes back as a system message).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from cotfaith.models.base import Message

TEMPLATES = ("chatml",)
"""Built-in templates, by name."""
_START, _END = "<|im_start|>", "<|im_end|>"


def render(messages: tuple[Message, ...], prefill: str | None, template: str = "chatml") -> str:
    """The conversation as text, ending inside an open assistant turn (holding `prefill`)."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown chat template {template!r}; known: {', '.join(TEMPLATES)}")
    # content holding the delimiters would forge turns (a prompt injection on raw endpoints)
    for text in (*(m.content for m in messages), prefill or ""):
        if _START in text or _END in text:
            raise ValueError("ChatML delimiters inside a message or prefill cannot be rendered")
    parts = [f"{_START}{m.role}\n{m.content}{_END}\n" for m in messages]
    parts.append(f"{_START}assistant\n{prefill or ''}")
    return "".join(parts)


def parse(text: str) -> tuple[list[Message], str]:
    """Inverse of `render`: the closed turns and the text of the open assistant turn."""
    if not text.startswith(_START):
        raise ValueError("not a ChatML prompt")
    messages: list[Message] = []
    chunks = text.split(_START)[1:]
    for i, chunk in enumerate(chunks):
        role, _, body = chunk.partition("\n")
        if i == len(chunks) - 1:
            if role != "assistant" or _END in body:
                raise ValueError("a ChatML completion prompt must end in an open assistant turn")
            return messages, body
        if not body.endswith(f"{_END}\n"):
            raise ValueError(f"ChatML turn {i} ({role}) is not closed")
        messages.append(Message(role, body[: -len(_END) - 1]))  # type: ignore[arg-type]
    raise ValueError("empty ChatML prompt")


# ---------------------------------------------------------------------------------------------
# Jinja (Hugging Face) templates
# ---------------------------------------------------------------------------------------------

# Special-token spellings used as turn delimiters: "<|im_start|>", "<|eot_id|>", "<end_of_turn>"
_SPECIAL = re.compile(r"<\|[^|<>\s]{1,40}\|>|<(?:start|end)_of_turn>|\[/?INST\]")
# End-of-turn markers worth sending as stop strings when the template uses them (servers stop at
# the end-of-generation token anyway; these catch a server that renders it as text)
_TURN_ENDS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")


@dataclass(frozen=True)
class ChatTemplate:
    """A chat template to render completion prompts with, and where it came from."""

    text: str | None = None
    """Jinja source; None for the built-in ChatML."""
    bos_token: str = ""
    eos_token: str = ""
    source: str = "built-in ChatML"
    """Where it was found (for the log and notices; not part of the cache key)."""
    today: str | None = None
    """The date (ISO) `strftime_now` renders, for templates that print today's date (Llama
    3.x): fixed when the template is first stored with a cache, so a rerun or replay on
    another day renders, and keys, the same prompts. None: the real date."""

    @property
    def dated(self) -> bool:
        return self.text is not None and "strftime_now" in self.text

    @property
    def key(self) -> str:
        """What goes into the backend identity (the cache key): the template changes the
        prompts, so its content does; where it was found does not."""
        if self.text is None:
            return "chatml"  # as before, so existing completion-mode caches stay valid
        parts = [self.text, self.bos_token, self.eos_token]
        if self.dated and self.today is not None:
            parts.append(self.today)  # the date is in the prompt, so in the key
        payload = json.dumps(parts, ensure_ascii=False)
        return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()

    @property
    def stop(self) -> tuple[str, ...]:
        if self.text is None:
            return (_END,)
        ends = [t for t in _TURN_ENDS if t in self.text]
        if self.eos_token and self.eos_token not in ends:
            ends.append(self.eos_token)
        return tuple(ends)

    def render(self, messages: tuple[Message, ...], prefill: str | None) -> str:
        """The conversation ending in an open assistant turn that holds `prefill`."""
        if self.text is None:
            return render(messages, prefill)
        specials = set(_SPECIAL.findall(self.text)) | {self.bos_token, self.eos_token} - {""}
        for text in (*(m.content for m in messages), prefill or ""):
            found = [s for s in specials if s in text]
            if found:
                raise ValueError(
                    f"the chat template's special token {found[0]!r} inside a message or "
                    "prefill cannot be rendered (it would forge a turn)"
                )
        import jinja2

        now = datetime.now()
        if self.today:
            now = datetime.combine(date.fromisoformat(self.today), now.time())
        try:
            prompt = _compile(self.text).render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                # as transformers and llama.cpp do, but on the template's pinned date
                strftime_now=lambda fmt: now.strftime(fmt),
            )
        except jinja2.TemplateError as e:
            raise ValueError(f"chat template ({self.source}) failed to render: {e}") from e
        return prompt + (prefill or "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "source": self.source,
            **({"today": self.today} if self.today else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChatTemplate:
        return cls(
            text=d.get("text"),
            bos_token=str(d.get("bos_token") or ""),
            eos_token=str(d.get("eos_token") or ""),
            source=str(d.get("source") or "stored"),
            today=d.get("today") or None,
        )


CHATML = ChatTemplate()


@lru_cache(maxsize=8)
def _compile(text: str) -> Any:
    """The template compiled as `transformers` compiles chat templates (once per text)."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _GenerationTag(jinja2.ext.Extension):
        # HF's `{% generation %}...{% endgeneration %}` marks assistant tokens for training
        # masks; for rendering it is a pass-through
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.Scope(body, lineno=lineno)

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    def strftime_now(fmt: str) -> str:
        # replaced at render time by the template's pinned date (ChatTemplate.render)
        return datetime.now().strftime(fmt)

    def tojson(
        x: Any,
        ensure_ascii: bool = False,
        indent: int | None = None,
        separators: tuple[str, str] | None = None,
        sort_keys: bool = False,
    ) -> str:
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        return env.from_string(text)
    except jinja2.TemplateSyntaxError as e:
        raise ValueError(f"chat template is not valid Jinja (line {e.lineno}): {e.message}") from e


# ---------------------------------------------------------------------------------------------
# Where templates come from
# ---------------------------------------------------------------------------------------------


def _token(value: Any) -> str:
    """A special token as tokenizer_config.json spells it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        return str(value.get("content") or "")
    return str(value or "")


def _pick(template: Any, where: str) -> str:
    """tokenizer_config's chat_template: a string, or a list of named ones ("default")."""
    if isinstance(template, str):
        return template
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        if isinstance(named.get("default"), str):
            return named["default"]
    raise ValueError(f"{where}: no usable chat_template (a string or a 'default' entry)")


def from_tokenizer_config(path: Path) -> ChatTemplate:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable tokenizer_config.json ({e})") from e
    template = data.get("chat_template") if isinstance(data, dict) else None
    sibling = path.with_name("chat_template.jinja")  # newer repos keep it in its own file
    if template is None and sibling.is_file():
        template = sibling.read_text(encoding="utf-8")
    if template is None:
        raise ValueError(f"{path}: has no chat_template")
    return ChatTemplate(
        text=_pick(template, str(path)),
        bos_token=_token(data.get("bos_token")),
        eos_token=_token(data.get("eos_token")),
        source=f"file {path}",
    )


def from_file(path: str | Path) -> ChatTemplate:
    """A template from a tokenizer_config.json, a .gguf model file or a Jinja text file."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in ("tokenizer_config.json", "chat_template.jinja"):
            if (p / name).is_file():
                return from_file(p / name)
        raise ValueError(f"{p}: folder holds no tokenizer_config.json or chat_template.jinja")
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    if p.suffix == ".json":
        return from_tokenizer_config(p)
    if p.suffix == ".gguf":
        return from_gguf(p)
    config = p.with_name("tokenizer_config.json")
    bos = eos = ""
    if config.is_file():  # a chat_template.jinja beside its tokenizer config: take its tokens
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
            bos, eos = _token(data.get("bos_token")), _token(data.get("eos_token"))
        except (OSError, ValueError):
            pass
    text = p.read_text(encoding="utf-8")
    _compile(text)  # a syntax error is reported now, naming the file, not at the first call
    return ChatTemplate(text=text, bos_token=bos, eos_token=eos, source=f"file {p}")


def from_props(props: Any, url: str) -> ChatTemplate | None:
    """The template a llama.cpp server reports at GET /props, if it reports one."""
    if not isinstance(props, dict) or not isinstance(props.get("chat_template"), str):
        return None
    if not props["chat_template"].strip():
        return None
    return ChatTemplate(
        text=props["chat_template"],
        bos_token=_token(props.get("bos_token")),
        eos_token=_token(props.get("eos_token")),
        source=f"server {url}",
    )


def find_local(name: str) -> ChatTemplate | None:
    """A template found on this machine for `model.name`, without the network: the name as a
    path (model folder, .gguf or tokenizer_config.json), else the Hugging Face hub cache."""
    p = Path(name).expanduser()
    try:
        if p.exists():
            return from_file(p)
    except ValueError:
        return None
    if name.count("/") != 1:
        return None
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface"), "hub"
    )
    snapshots = Path(hub) / ("models--" + name.replace("/", "--")) / "snapshots"
    if not snapshots.is_dir():
        return None
    for snap in sorted(snapshots.iterdir(), key=lambda s: s.stat().st_mtime, reverse=True):
        if (snap / "tokenizer_config.json").is_file():
            try:
                return from_tokenizer_config(snap / "tokenizer_config.json")
            except ValueError:
                continue
    return None


# ---------------------------------------------------------------------------------------------
# GGUF metadata (llama.cpp model files carry the chat template and special tokens)
# ---------------------------------------------------------------------------------------------

# value type -> struct format of the scalar types (GGUF spec v2/v3, little-endian)
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q"}
_GGUF_SCALARS |= {11: "q", 12: "d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_WANTED = {
    "tokenizer.chat_template",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.tokens",
}


def _read(fh: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize("<" + fmt)
    data = fh.read(size)
    if len(data) != size:
        raise ValueError("truncated GGUF metadata")
    return struct.unpack("<" + fmt, data)[0]


def _gguf_string(fh: BinaryIO) -> str:
    n = _read(fh, "Q")
    data = fh.read(n)
    if len(data) != n:
        raise ValueError("truncated GGUF metadata")
    return data.decode("utf-8", errors="replace")


def _gguf_value(fh: BinaryIO, kind: int, keep: bool) -> Any:
    if kind == _GGUF_STRING:
        return _gguf_string(fh)
    if kind == _GGUF_ARRAY:
        inner, n = _read(fh, "I"), _read(fh, "Q")
        if inner in _GGUF_SCALARS and not keep:
            fh.seek(n * struct.calcsize("<" + _GGUF_SCALARS[inner]), os.SEEK_CUR)
            return None
        values = [_gguf_value(fh, inner, keep) for _ in range(n)]
        return values if keep else None
    if kind in _GGUF_SCALARS:
        return _read(fh, _GGUF_SCALARS[kind])
    raise ValueError(f"unknown GGUF value type {kind}")


def gguf_metadata(path: str | Path, wanted: set[str] | frozenset[str] = frozenset(_WANTED)) -> dict:
    """The `wanted` key/value pairs of a GGUF file's header (tensors are never read)."""
    out: dict[str, Any] = {}
    with Path(path).open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        version = _read(fh, "I")
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported (2 or later)")
        _read(fh, "Q")  # tensor count
        for _ in range(_read(fh, "Q")):
            key = _gguf_string(fh)
            value = _gguf_value(fh, _read(fh, "I"), keep=key in wanted)
            if key in wanted:
                out[key] = value
    return out


def from_gguf(path: str | Path) -> ChatTemplate:
    meta = gguf_metadata(path)
    text = meta.get("tokenizer.chat_template")
    if not isinstance(text, str):
        raise ValueError(f"{path}: the GGUF metadata holds no tokenizer.chat_template")
    tokens = meta.get("tokenizer.ggml.tokens") or []

    def token(key: str) -> str:
        i = meta.get(key)
        return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else ""

    return ChatTemplate(
        text=text,
        bos_token=token("tokenizer.ggml.bos_token_id"),
        eos_token=token("tokenizer.ggml.eos_token_id"),
        source=f"file {path}",
    )
