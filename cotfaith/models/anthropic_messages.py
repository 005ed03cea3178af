"""Anthropic messages API.

No logprobs, so answers are read after a prefilled "The single, most likely answer is (" where
the model accepts assistant prefill, and parsed from an instructed reply where it does not
(newer Claude models answer a prefill with a 400). Prefill is never trusted untested: `prefill:
auto` and `true` probe once with a prefill whose only sensible continuation is known
("1, 2, ..., 7," -> "8"); `auto` falls back to instruction + parse when the model refuses or
does not continue, `true` fails in one line. The outcome is kept in the cache so a replay
decides the same way. Newer Claude models also reject requests
that set both temperature and top_p, hence `omit_params: [top_p]` in conf/model/anthropic.yaml;
the newest accept no sampling parameters at all (`omit_params: [temperature, top_p]`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cotfaith.errors import ConfigError
from cotfaith.models.api import (
    CONTINUATION_PROBE,
    ApiModel,
    ApiModelConfig,
    continuation_verdict,
    describe_verdict,
    read_reply,
)
from cotfaith.models.base import Capabilities, ModelRequest, ModelResponse, ProbeStore, Usage
from cotfaith.registry import register


@dataclass
class AnthropicModelConfig(ApiModelConfig):
    provider: str = "anthropic"
    api_key_env: str | None = "ANTHROPIC_API_KEY"
    prefill: str = "auto"
    """auto | true | false. auto and true probe once that the model really continues a
    prefilled turn; auto falls back to instruction + parse when it does not, true fails."""
    omit_params: list[str] = field(default_factory=lambda: ["top_p"])


# ----------------------------------------------------------------------------- the rest


class AnthropicMessages(ApiModel):
    provider = "anthropic"
    sdk, sdk_client = "anthropic", "AsyncAnthropic"
    continuation = "prefill"

    def __init__(self, cfg: Mapping[str, Any]):
        super().__init__(cfg)
        self.prefill_setting = str(cfg.get("prefill", "auto")).lower()
        if self.prefill_setting not in ("auto", "true", "false"):
            raise ConfigError(
                f"model.prefill: {self.prefill_setting!r} is not one of auto, true, false"
            )
        self.capabilities = Capabilities(
            prefill=self.prefill_setting != "false", logprobs=False, completion=False
        )

    @property
    def identity(self) -> dict[str, Any]:
        ident: dict[str, Any] = {
            "provider": self.provider,
            "model": self.name,
            "base_url": self.base_url,
        }
        return self._with_omissions(ident)

    async def _call(self, request: ModelRequest) -> ModelResponse:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        messages = [
            {"role": m.role, "content": m.content} for m in request.messages if m.role != "system"
        ]
        if request.prefill is not None:
            # the API rejects a final assistant turn that ends in white space
            messages.append({"role": "assistant", "content": request.prefill.rstrip()})
        # The 1.x/2.x SDKs dropped the sampling keywords from create(); the API still takes
        # them (where the model allows) in the body.
        sampling: dict[str, Any] = {"temperature": request.temperature, "top_p": request.top_p}
        for name in self.omit:
            sampling.pop(name, None)
        body: dict[str, Any] = {
            "model": self.name,
            "messages": messages,
            "max_tokens": request.max_tokens,
            **sampling,
        }
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if system:
            body["system"] = system
        # the SDK's documented raw-request path: auth, transport and error mapping stay the
        # SDK's; its per-call param transform and response models (the costly part) are skipped
        data = await self.client.post(
            "/v1/messages",
            cast_to=object,
            body=body,
            # no seed in this API: the sample index travels as a header (ignored by the API,
            # read by the loopback test servers)
            options={"headers": {"x-cotfaith-sample": str(request.sample_index)}},
        )
        return read_reply(data, f"{self.where()}/v1/messages", _response)

    # ------------------------------------------------------------------ preflight hooks
    async def check_model(self) -> None:
        try:
            await self.retrying(lambda: self.client.models.retrieve(self.name), "model check")
        except Exception as e:  # noqa: BLE001 - turned into one clear line
            raise self.preflight_error(e) from e

    async def settle(self, probes: ProbeStore) -> None:
        if self.prefill_setting == "false":
            self.capabilities = Capabilities(prefill=False, logprobs=False, completion=False)
            return
        # a cache filled before continuation was verified holds the old refusal probe:
        # a replay of it decides as that run did
        old = probes.get_probe("prefill", self.identity) if probes.replay else None
        outcome = await self.probed(
            probes,
            "continuation",
            self.identity,
            self._probe_continuation,
            legacy=None if old is None else {"ok": bool(old), "refused": not old},
        )
        ok = bool(outcome.get("ok"))
        if not ok:
            if outcome.get("refused"):
                why = "refuses assistant prefill (400)"
            else:
                why = f"does not continue a prefilled turn ({describe_verdict(outcome)})"
            if self.prefill_setting == "true":
                raise ConfigError(
                    f"model.prefill=true: anthropic/{self.name} {why}; use model.prefill=auto "
                    "(instruction + parse where prefill fails) or false"
                )
            self.notice(
                f"anthropic/{self.name} {why}: CoTs are asked for by instruction and answers "
                "are parsed from the reply (answer strategy 'parse'); results are not "
                "comparable with prefilled runs"
            )
        self.capabilities = Capabilities(prefill=ok, logprobs=False, completion=False)

    async def _probe_continuation(self) -> dict[str, Any]:
        from anthropic import BadRequestError

        try:
            # through the run's own call path, so the probe is sent as answers will be
            response = await self.retrying(lambda: self._call(CONTINUATION_PROBE), "prefill probe")
        except BadRequestError as e:
            if "prefill" in str(e).lower():
                return {"ok": False, "refused": True}
            raise self.preflight_error(e) from e
        except Exception as e:  # noqa: BLE001
            raise self.preflight_error(e) from e
        return continuation_verdict(response)


def _response(data: Any) -> ModelResponse:
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise ValueError("no content list")
    text = "".join(b.get("text", "") for b in data["content"] if b.get("type") == "text")
    u = data.get("usage") or {}
    cache_read = u.get("cache_read_input_tokens") or 0
    # Anthropic's input_tokens leaves out cache reads and writes; ours counts all input
    # (with cached_input_tokens the part that was read from the cache), as OpenAI's does
    total_input = (
        (u.get("input_tokens") or 0) + cache_read + (u.get("cache_creation_input_tokens") or 0)
    )
    return ModelResponse(
        text=text,
        finish_reason=data.get("stop_reason"),
        usage=Usage(
            input_tokens=int(total_input),
            output_tokens=int(u.get("output_tokens") or 0),
            cached_input_tokens=int(cache_read),
        ),
    )


@register("backend", "anthropic", config=AnthropicModelConfig)
def build_anthropic(cfg: Mapping[str, Any]) -> AnthropicMessages:
    """Anthropic's messages API."""
    return AnthropicMessages(cfg)
