"""OpenAI chat completions, and any OpenAI-compatible server (vLLM, Ollama, llama.cpp).

Continuation of a partial assistant turn (`continuation`):
- `none`: OpenAI's own API, which cannot continue an assistant turn;
- `prefill`: vLLM's `continue_final_message` (the trailing assistant message is continued);
- `completion`: the raw `/v1/completions` endpoint with the conversation rendered by a chat
  template (ChatML), for servers and models where that is exact.
Answers are read from logprobs where the model returns them; `logprobs: auto` probes once (the
outcome is kept in the cache, so a replay decides the same way) and falls back to parsing.
The sample index is sent as `seed`, so a sample is reproducible where the server honours it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cotfaith.errors import ConfigError
from cotfaith.models import chat_template
from cotfaith.models.api import ApiModel
from cotfaith.models.base import Capabilities, ModelRequest, ModelResponse, Usage
from cotfaith.models.retry import BadResponse

CONTINUATIONS = ("none", "prefill", "completion")


class OpenAIChat(ApiModel):
    sdk, sdk_client = "openai", "AsyncOpenAI"

    def __init__(self, cfg: Mapping[str, Any], provider: str = "openai"):
        super().__init__(cfg)
        self.provider = provider
        self.continuation = str(cfg.get("continuation") or "none")
        if self.continuation not in CONTINUATIONS:
            raise ConfigError(
                f"model.continuation: {self.continuation!r} is not one of {CONTINUATIONS}"
            )
        self.template = str(cfg.get("chat_template") or "chatml")
        if self.template not in chat_template.TEMPLATES:
            raise ConfigError(
                f"model.chat_template: unknown template {self.template!r}; known: "
                f"{', '.join(chat_template.TEMPLATES)}"
            )
        self.logprobs_setting = str(cfg.get("logprobs", "auto")).lower()
        self.send_seed = bool(cfg.get("send_seed", True))
        # OpenAI's own API names the output cap max_completion_tokens; servers use max_tokens
        self.max_tokens_field = "max_completion_tokens" if provider == "openai" else "max_tokens"
        self.capabilities = Capabilities(
            prefill=self.continuation != "none",
            logprobs=self.logprobs_setting != "false",
            completion=self.continuation == "completion",
        )

    @property
    def identity(self) -> dict[str, Any]:
        ident: dict[str, Any] = {
            "provider": self.provider,
            "model": self.name,
            "base_url": self.base_url,
            "endpoint": "completions" if self.continuation == "completion" else "chat",
            "continuation": self.continuation,
        }
        if self.continuation == "completion":
            ident["chat_template"] = self.template
        return self._with_omissions(ident)

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
        if self.continuation == "completion":
            return await self._complete(request)
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        extra: dict[str, Any] = {}
        if request.prefill is not None:
            if self.continuation != "prefill":
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
        choice = data["choices"][0]
        top = None
        content = (choice.get("logprobs") or {}).get("content")
        if content:
            top = {}
            for alt in content[0].get("top_logprobs") or []:
                top[alt["token"]] = max(alt["logprob"], top.get(alt["token"], float("-inf")))
        return ModelResponse(
            text=(choice.get("message") or {}).get("content") or "",
            top_logprobs=top,
            finish_reason=choice.get("finish_reason"),
            usage=_usage(data.get("usage")),
        )

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
        prompt = chat_template.render(request.messages, request.prefill, self.template)
        body = {
            "model": self.name,
            "prompt": prompt,
            "max_tokens": request.max_tokens,
            **self._sampling(request),
        }
        body["stop"] = [*body.get("stop", []), "<|im_end|>"]
        if request.top_logprobs:
            body["logprobs"] = min(request.top_logprobs, 20)
        data = await self._post("/completions", body)
        choice = data["choices"][0]
        lp = choice.get("logprobs") or {}
        top = dict(lp["top_logprobs"][0]) if lp.get("top_logprobs") else None
        return ModelResponse(
            text=choice.get("text") or "",
            top_logprobs=top,
            finish_reason=choice.get("finish_reason"),
            usage=_usage(data.get("usage")),
        )

    # ------------------------------------------------------------------ preflight
    # ------------------------------------------------------------------ preflight hooks
    probe_name = "logprobs"

    @property
    def probe_wanted(self) -> bool:
        return self.logprobs_setting == "auto"

    def _settle(self, ok: bool | None) -> None:
        if ok is None:
            return
        if not ok:
            self.notice(
                f"{self.provider}/{self.name} returns no logprobs: answers are read "
                "by parsing an instructed reply (answer strategy 'parse')"
            )
        self.capabilities = Capabilities(
            prefill=self.capabilities.prefill,
            logprobs=bool(ok),
            completion=self.capabilities.completion,
        )

    async def check_model(self) -> None:
        from openai import NotFoundError

        try:
            if self.provider == "openai":
                await self.retrying(lambda: self.client.models.retrieve(self.name), "model check")
                return
            page = await self.retrying(lambda: self.client.models.list(), "model list")
            served = [m.id for m in page.data]
        except NotFoundError as e:
            if self.provider == "openai":
                raise self.preflight_error(e) from e
            return  # some servers have no models endpoint: nothing to check against
        except Exception as e:  # noqa: BLE001 - turned into one clear line
            raise self.preflight_error(e) from e
        if served and self.name not in served:
            raise ConfigError(
                f"model.name: {self.name!r} is not served by {self.where()}; "
                f"it serves {served[:10]}"
            )

    async def _probe(self) -> bool:
        from openai import BadRequestError

        try:
            response = await self.retrying(
                lambda: self.client.chat.completions.create(
                    model=self.name,
                    messages=[{"role": "user", "content": "Reply with the letter A."}],
                    logprobs=True,
                    top_logprobs=5,
                    **{self.max_tokens_field: 1},
                ),
                "logprobs probe",
            )
        except BadRequestError as e:
            if "logprob" in str(e).lower():
                return False
            raise self.preflight_error(e) from e
        except Exception as e:  # noqa: BLE001
            raise self.preflight_error(e) from e
        choice = response.choices[0]
        return bool(choice.logprobs and choice.logprobs.content)


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
