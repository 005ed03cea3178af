"""OpenAI chat completions, and any OpenAI-compatible server (vLLM, Ollama, llama.cpp).

Continuation of a partial assistant turn (`continuation`):
- `none`: the CoT and the answer are asked for by instruction (OpenAI's own API cannot continue
  an assistant turn);
- `prefill`: vLLM's `continue_final_message` (the trailing assistant message is continued);
- `completion`: the raw `/v1/completions` endpoint with the conversation rendered by the
  model's chat template (see `chat_template` for where the template comes from);
- `auto`: probe `prefill`, then `completion`, and take the first that really continues; else
  `none`, said in a notice.
No mode is trusted untested: before a run relies on one, a prefill whose only sensible
continuation is known ("1, 2, ..., 7," -> "8") is sent the way the run will send its requests,
and the reply text and first-token logprobs are checked (llama.cpp, for one, silently ignores
`continue_final_message` and starts a new turn). An explicit mode the server does not honour
fails in one line naming the alternatives. Every probe outcome, and a chat template fetched from
the server, is kept in the cache, so a replay decides the same way without the server.

Answers are read from logprobs where the model returns them; `logprobs: auto` probes once, on
the endpoint the run uses, and falls back to parsing. The sample index is sent as `seed`, so a
sample is reproducible where the server honours it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlparse

from cotfaith.errors import ConfigError
from cotfaith.models import chat_template
from cotfaith.models.api import (
    CONTINUATION_PROBE,
    ApiModel,
    ApiModelConfig,
    continuation_verdict,
    describe_verdict,
    read_reply,
    redact,
)
from cotfaith.models.base import (
    Capabilities,
    Message,
    ModelRequest,
    ModelResponse,
    ProbeStore,
    Usage,
)
from cotfaith.models.chat_template import ChatTemplate
from cotfaith.models.retry import BadResponse, classify
from cotfaith.registry import register

CONTINUATIONS = ("auto", "none", "prefill", "completion")
MAX_TOKENS_FIELDS = ("auto", "max_tokens", "max_completion_tokens")
_LOGPROBS_PROBE = ModelRequest(
    messages=(Message("user", "Reply with the letter A."),),
    temperature=0.0,
    top_p=1.0,
    max_tokens=1,
    top_logprobs=5,
)


@dataclass
class OpenAIModelConfig(ApiModelConfig):
    provider: str = "openai"
    api_key_env: str | None = "OPENAI_API_KEY"
    logprobs: str = "auto"
    """auto (probe once) | true | false."""
    continuation: str = "none"
    """How a partial assistant turn is continued: none (CoT and answers by instruction) |
    prefill (vLLM continue_final_message) | completion (raw /v1/completions with the chat
    template) | auto (probe prefill, then completion, else none). Every mode is verified by a
    probe before the run relies on it; an explicit mode the server does not honour fails.
    Default none for OpenAI's API (it cannot continue a turn); conf/model/openai_compatible.yaml
    sets auto, so a local server gets real continuation where it has one, and only then."""
    chat_template: str = "auto"
    """Template for continuation=completion. auto: the server's own (llama.cpp GET /props),
    else local files named by model.name (a model folder, a .gguf file, the Hugging Face hub
    cache), else the built-in ChatML (with a notice). Or give it: chatml, or a path to a
    tokenizer_config.json, a .gguf model file or a Jinja template file. Its content is part
    of the cache key."""
    max_tokens_field: str = "auto"
    """Request field for the output cap: auto (max_completion_tokens for OpenAI's own API, no
    base_url or api.openai.com; max_tokens elsewhere: llama.cpp ignores the other) |
    max_tokens | max_completion_tokens."""
    send_seed: bool = True
    """Send the sample index as `seed` (reproducible samples where the server honours it)."""


class OpenAIChat(ApiModel):
    sdk, sdk_client = "openai", "AsyncOpenAI"

    def __init__(self, cfg: Mapping[str, Any], provider: str = "openai"):
        super().__init__(cfg)
        self.provider = provider
        self.continuation_setting = str(cfg.get("continuation") or "none")
        if self.continuation_setting not in CONTINUATIONS:
            raise ConfigError(
                f"model.continuation: {self.continuation_setting!r} is not one of {CONTINUATIONS}"
            )
        # until the preflight has probed, `auto` is taken at its best case (a dry run, which
        # probes nothing, counts the calls of a continuing backend)
        self.continuation = (
            "prefill" if self.continuation_setting == "auto" else self.continuation_setting
        )
        self.template_setting = str(cfg.get("chat_template") or "auto")
        self.template: ChatTemplate | None = None
        """The chat template for completion mode, once known (`auto` is settled by probing)."""
        if self.template_setting == "chatml":
            self.template = chat_template.CHATML
        elif self.template_setting != "auto":
            try:
                self.template = chat_template.from_file(self.template_setting)
            except ValueError as e:
                raise ConfigError(
                    f"model.chat_template: {e} (give auto, chatml, a tokenizer_config.json, "
                    "a .gguf model file or a Jinja template file)"
                ) from None
        self.logprobs_setting = str(cfg.get("logprobs", "auto")).lower()
        self.send_seed = bool(cfg.get("send_seed", True))
        field = str(cfg.get("max_tokens_field") or "auto")
        if field not in MAX_TOKENS_FIELDS:
            raise ConfigError(
                f"model.max_tokens_field: {field!r} is not one of {MAX_TOKENS_FIELDS}"
            )
        self.max_tokens_field = self._auto_max_tokens_field() if field == "auto" else field
        self.capabilities = Capabilities(
            prefill=self.continuation != "none",
            logprobs=self.logprobs_setting != "false",
            completion=self.continuation == "completion",
        )

    def _auto_max_tokens_field(self) -> str:
        # OpenAI's own API names the output cap max_completion_tokens (newer models reject
        # max_tokens); every other server reads max_tokens, and llama.cpp silently ignores
        # max_completion_tokens (one uncapped call ran 4,058 tokens for 6 minutes)
        if self.base_url is None or urlparse(self.base_url).hostname == "api.openai.com":
            return "max_completion_tokens"
        return "max_tokens"

    def _identity(self, mode: str) -> dict[str, Any]:
        ident: dict[str, Any] = {
            "provider": self.provider,
            "model": self.name,
            "base_url": self.base_url,
            "endpoint": "completions" if mode == "completion" else "chat",
            "continuation": mode,
        }
        if mode == "completion":
            # the template shapes every prompt, so its content is part of the key
            ident["chat_template"] = self.template.key if self.template else "auto"
        elif self.max_tokens_field != self._auto_max_tokens_field():
            # a field the server may ignore changes the output; the automatic choice follows
            # from provider and base URL, already in the key, so only an override is added
            ident["max_tokens_field"] = self.max_tokens_field
        return self._with_omissions(ident)

    @property
    def identity(self) -> dict[str, Any]:
        return self._identity(self.continuation)

    # ------------------------------------------------------------------ calls
    def _sampling(self, request: ModelRequest) -> dict[str, Any]:
        params: dict[str, Any] = {"temperature": request.temperature, "top_p": request.top_p}
        if request.stop:
            params["stop"] = list(request.stop)
        if self.send_seed and request.temperature > 0:
            params["seed"] = request.sample_index
        for name in self.omit:
            params.pop(name, None)
        return params

    async def _call(self, request: ModelRequest) -> ModelResponse:
        return await self._send(request, self.continuation)

    async def _send(self, request: ModelRequest, mode: str) -> ModelResponse:
        """One call the way continuation `mode` makes it (probes use this too, so a probe goes
        to the endpoint, with the template, that the run will use)."""
        if mode == "completion":
            return await self._complete(request)
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        extra: dict[str, Any] = {}
        if request.prefill is not None:
            if mode != "prefill":
                # a bug in the caller, not a fault of the server: never retried
                raise RuntimeError(f"{self.provider}/{self.name} cannot continue a prefill")
            messages.append({"role": "assistant", "content": request.prefill})
            extra = {"continue_final_message": True, "add_generation_prompt": False}
        body = {"model": self.name, "messages": messages, **self._sampling(request), **extra}
        body[self.max_tokens_field] = request.max_tokens
        if request.top_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = min(request.top_logprobs, 20)
        data = await self._post("/chat/completions", body)
        return read_reply(data, f"{self.where()}/chat/completions", _chat_response)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST through the SDK's documented raw-request path (`client.post`).

        The SDK still does auth, headers, the HTTP transport and maps error statuses to its
        exceptions; what we skip is its per-call transform of typed params and the pydantic
        response models, which cost more CPU than everything else per call (profiled in
        benchmarks/throughput.py). The body is plain JSON we build ourselves.
        """
        data = await self.client.post(
            path, cast_to=object, body=body, options={"security": {"bearer_auth": True}}
        )
        if not isinstance(data, dict) or not data.get("choices"):
            raise BadResponse(f"unexpected response body from {self.where()}{path}: {data!r:.200}")
        return data

    async def _complete(self, request: ModelRequest) -> ModelResponse:
        template = self.template or chat_template.CHATML
        prompt = template.render(request.messages, request.prefill)
        body = {
            "model": self.name,
            "prompt": prompt,
            # every server's /completions (OpenAI's legacy one too) names the cap max_tokens
            "max_tokens": request.max_tokens,
            **self._sampling(request),
        }
        body["stop"] = [*body.get("stop", []), *template.stop]
        if request.top_logprobs:
            body["logprobs"] = min(request.top_logprobs, 20)
        data = await self._post("/completions", body)
        return read_reply(data, f"{self.where()}/completions", _completion_response)

    # ------------------------------------------------------------------ preflight
    async def check_model(self) -> None:
        """The model must be listed by the server. OpenAI's own API answers GET /models/{id};
        llama.cpp and others only have the list, so a 404 there falls back to the list."""
        from openai import NotFoundError

        try:
            if self.provider == "openai":
                try:
                    await self.retrying(
                        lambda: self.client.models.retrieve(self.name), "model check"
                    )
                    return
                except NotFoundError:
                    pass  # no such model, or no such route: the list tells which
            try:
                page = await self.retrying(lambda: self.client.models.list(), "model list")
            except NotFoundError as e:
                await self._diagnose_base_url()
                if self.provider == "openai":
                    raise self.preflight_error(e) from e
                return  # some servers have no models endpoint: nothing to check against
            served = [m.id for m in page.data]
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - turned into one clear line
            raise self.preflight_error(e) from e
        if served and self.name not in served:
            raise ConfigError(
                f"model.name: {self.name!r} is not served by {self.where()}; "
                f"it serves {served[:10]}"
            )

    async def _diagnose_base_url(self) -> None:
        """A base URL without /v1 answers 404 everywhere; say so when /v1 would work."""
        if not self.base_url or self.base_url.endswith("/v1"):
            return
        try:
            await self.client.get(f"{self.base_url}/v1/models", cast_to=object)
        except Exception:  # noqa: BLE001 - /v1 does not help either: the caller reports the 404
            return
        raise ConfigError(
            f"model.base_url: {self.base_url} answers 404 for /models but "
            f"{self.base_url}/v1/models works: add /v1"
        )

    async def settle(self, probes: ProbeStore) -> None:
        candidates = {
            "auto": ("prefill", "completion"),
            "prefill": ("prefill",),
            "completion": ("completion",),
            "none": (),
        }[self.continuation_setting]
        if self.template is not None:  # given in config
            self.template = await self._pinned(probes, self.template)
        tried: list[tuple[str, dict[str, Any]]] = []
        chosen = "none"
        for mode in candidates:
            if mode == "completion" and self.template is None:
                self.template = await self._settle_template(probes)
            # a replay of a cache made before continuation was verified trusts an explicit
            # mode, as that run did
            legacy = {"ok": True, "legacy": True} if self.continuation_setting == mode else None
            outcome = await self.probed(
                probes,
                "continuation",
                self._identity(mode),
                lambda mode=mode: self._probe_continuation(mode),
                legacy=legacy,
            )
            if outcome.get("ok"):
                chosen = mode
                break
            tried.append((mode, outcome))
        if candidates and chosen == "none":
            self._fail_or_fall_back(tried)
        elif tried:  # auto settled on completion after prefill failed
            self.notice(
                f"{self.provider}/{self.name} at {self.where()} does not continue a prefilled "
                f"chat turn ({describe_verdict(tried[0][1])}): continuation by raw /completions "
                f"with the chat template from {self._template_source()}"
            )
        self.continuation = chosen
        self.capabilities = Capabilities(
            prefill=chosen != "none",
            logprobs=self.capabilities.logprobs,
            completion=chosen == "completion",
        )
        if self.logprobs_setting == "auto":
            ok = await self.probed(probes, "logprobs", self.identity, self._probe_logprobs)
            self._settle_logprobs(bool(ok))

    def _template_source(self) -> str:
        return self.template.source if self.template else "none"

    def _fail_or_fall_back(self, tried: list[tuple[str, dict[str, Any]]]) -> None:
        why = "; ".join(f"{mode}: {describe_verdict(outcome)}" for mode, outcome in tried)
        if self.continuation_setting == "prefill":
            raise ConfigError(
                f"model.continuation=prefill: {self.where()} does not continue a prefilled "
                f"assistant turn ({why}); use model.continuation=completion (raw /completions "
                "with the model's chat template), none (CoT and answers by instruction) or auto"
            )
        if self.continuation_setting == "completion":
            raise ConfigError(
                f"model.continuation=completion: {self.where()}/completions does not continue "
                f"the prompt rendered with the chat template from {self._template_source()} "
                f"({why}); give the model's template with model.chat_template=<tokenizer_config"
                ".json | .gguf | .jinja file>, or use model.continuation=none"
            )
        self.notice(
            f"{self.provider}/{self.name} at {self.where()} continues neither a prefilled chat "
            f"turn nor a raw completion ({why}): CoTs and answers are asked for by instruction "
            "(continuation none)"
        )

    async def _settle_template(self, probes: ProbeStore) -> ChatTemplate:
        """`chat_template: auto`: the server's template, else one found locally for
        model.name, else the built-in ChatML. Stored as a probe: a replay needs no server."""
        ident = {"provider": self.provider, "model": self.name, "base_url": self.base_url}
        if probes.replay:
            # a cache from before templates were looked up was made with the built-in ChatML
            stored = await self.probed(
                probes,
                "chat_template",
                ident,
                self._find_template,
                legacy=chat_template.CHATML.to_dict(),
            )
        else:
            # looked up afresh each run (the server may now serve another model), then stored
            stored = await self._find_template()
            probes.put_probe("chat_template", ident, stored)
        template = await self._pinned(probes, ChatTemplate.from_dict(stored))
        if template.text is None:
            self.notice(
                f"no chat template found for {self.provider}/{self.name} (the server exposes "
                "none at /props, and model.name names no local model files): completion prompts "
                "use the built-in ChatML, which may differ from the server's own chat rendering; "
                "give model.chat_template=<tokenizer_config.json | .gguf | .jinja file>"
            )
        return template

    async def _pinned(self, probes: ProbeStore, template: ChatTemplate) -> ChatTemplate:
        """A template that prints today's date (Llama 3.x) renders on the date stored with the
        cache when this template was first used, so a rerun or a replay on another day sends,
        and keys, the same prompts; a cache from before dates were pinned used the real date."""
        if not template.dated or template.today:
            return template
        stored = await self.probed(
            probes,
            "template_date",
            {"chat_template": template.key},
            lambda: _today(),
            legacy={"today": None},
        )
        return dataclasses.replace(template, today=stored.get("today"))

    async def _find_template(self) -> dict[str, Any]:
        found = await self._server_template() or chat_template.find_local(self.name)
        return (found or chat_template.CHATML).to_dict()

    async def _server_template(self) -> ChatTemplate | None:
        """llama.cpp's `GET /props` (at the server root, beside /v1) reports its template."""
        if not self.base_url:
            return None
        root = self.base_url.removesuffix("/v1")
        for url in dict.fromkeys((f"{root}/props", f"{self.base_url}/props")):
            try:
                props = await self.client.get(url, cast_to=object)
            except Exception:  # noqa: BLE001 - no such route (most servers): look elsewhere
                continue
            found = chat_template.from_props(props, url)
            if found is not None:
                return found
        return None

    async def _probe_continuation(self, mode: str) -> dict[str, Any]:
        from openai import BadRequestError

        request = CONTINUATION_PROBE
        if self.logprobs_setting == "false":
            request = ModelRequest(**{**request.to_dict(), "top_logprobs": 0})
        for attempt in range(2):
            try:
                response = await self.retrying(
                    lambda request=request: self._send(request, mode), f"{mode} probe"
                )
                return continuation_verdict(response)
            except BadRequestError as e:
                if attempt == 0 and request.top_logprobs and "logprob" in str(e).lower():
                    # this model has no logprobs: judge by the text alone
                    request = ModelRequest(**{**request.to_dict(), "top_logprobs": 0})
                    continue
                # e.g. OpenAI's API rejecting continue_final_message: not a continuation
                return {"ok": False, "error": self._short(e)}
            except ValueError as e:
                if classify(e) is not None:  # a body that does not parse: the server's fault
                    raise self.preflight_error(e) from e
                return {"ok": False, "error": str(e)}  # the template cannot render the probe
            except Exception as e:  # noqa: BLE001
                raise self.preflight_error(e) from e
        raise AssertionError("unreachable")

    async def _probe_logprobs(self) -> bool:
        from openai import BadRequestError

        mode = self.continuation  # the endpoint the run uses: /completions in completion mode
        try:
            response = await self.retrying(
                lambda: self._send(_LOGPROBS_PROBE, mode), "logprobs probe"
            )
        except BadRequestError as e:
            if "logprob" in str(e).lower():
                return False
            raise self.preflight_error(e) from e
        except Exception as e:  # noqa: BLE001
            raise self.preflight_error(e) from e
        return bool(response.top_logprobs)

    def _short(self, exc: Exception, limit: int = 160) -> str:
        """An error's text for a stored probe outcome and a message: one line, no key."""
        key = os.environ.get(str(self.api_key_env)) if self.api_key_env else None
        text = redact(" ".join(str(exc).split()), key)
        return text if len(text) <= limit else text[: limit - 3] + "..."

    def _settle_logprobs(self, ok: bool) -> None:
        if not ok:
            self.notice(
                f"{self.provider}/{self.name} returns no logprobs: answers are read "
                "by parsing an instructed reply (answer strategy 'parse')"
            )
        self.capabilities = Capabilities(
            prefill=self.capabilities.prefill,
            logprobs=ok,
            completion=self.capabilities.completion,
        )


async def _today() -> dict[str, Any]:
    return {"today": date.today().isoformat()}


def _chat_response(data: dict[str, Any]) -> ModelResponse:
    choice = data["choices"][0]
    top = None
    content = (choice.get("logprobs") or {}).get("content")
    if content:
        top = {}
        for alt in content[0].get("top_logprobs") or []:
            top[alt["token"]] = max(float(alt["logprob"]), top.get(alt["token"], float("-inf")))
    return _reply(data, (choice.get("message") or {}).get("content"), top, "message.content")


def _completion_response(data: dict[str, Any]) -> ModelResponse:
    choice = data["choices"][0]
    lp = choice.get("logprobs") or {}
    top = None
    if lp.get("top_logprobs"):
        top = {str(t): float(v) for t, v in lp["top_logprobs"][0].items()}
    return _reply(data, choice.get("text"), top, "text")


def _reply(
    data: dict[str, Any], text: Any, top: dict[str, float] | None, field: str
) -> ModelResponse:
    """The response both endpoints' replies become (their first choice's text, finish reason
    and the usage); a text that is not a string is a reply not in the API's shape."""
    text = text or ""
    if not isinstance(text, str):
        raise TypeError(f"{field} is {type(text).__name__}, not text")
    return ModelResponse(
        text=text,
        top_logprobs=top,
        finish_reason=data["choices"][0].get("finish_reason"),
        usage=_usage(data.get("usage")),
    )


def _usage(u: dict[str, Any] | None) -> Usage:
    if not u:
        return Usage()
    cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (u.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return Usage(
        input_tokens=u.get("prompt_tokens") or 0,
        output_tokens=u.get("completion_tokens") or 0,
        cached_input_tokens=cached,
        reasoning_tokens=reasoning,
    )


@register("backend", "openai", config=OpenAIModelConfig)
def build_openai(cfg: Mapping[str, Any]) -> OpenAIChat:
    """OpenAI's chat completions API."""
    return OpenAIChat(cfg, provider="openai")


@register("backend", "openai_compatible")  # same schema (schema/model/openai)
def build_openai_compatible(cfg: Mapping[str, Any]) -> OpenAIChat:
    """Any OpenAI-compatible server: vLLM, llama.cpp, Ollama, hosted ones."""
    return OpenAIChat(cfg, provider="openai_compatible")
