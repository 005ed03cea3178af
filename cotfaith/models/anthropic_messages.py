"""Anthropic messages API.

No logprobs, so answers are read after a prefilled "The single, most likely answer is (" where
the model accepts assistant prefill, and parsed from an instructed reply where it does not
(newer Claude models answer a prefill with a 400). `prefill: auto` probes once; the outcome is
kept in the cache so a replay decides the same way. Newer Claude models also reject requests
that set both temperature and top_p, hence `omit_params: [top_p]` in conf/model/anthropic.yaml;
the newest accept no sampling parameters at all (`omit_params: [temperature, top_p]`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cotfaith.models.api import ApiModel
from cotfaith.models.base import Capabilities, ModelRequest, ModelResponse, Usage
from cotfaith.models.retry import BadResponse


class AnthropicMessages(ApiModel):
    provider = "anthropic"
    sdk, sdk_client = "anthropic", "AsyncAnthropic"
    continuation = "prefill"

    def __init__(self, cfg: Mapping[str, Any]):
        super().__init__(cfg)
        self.prefill_setting = str(cfg.get("prefill", "auto")).lower()
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
        if not isinstance(data, dict) or "content" not in data:
            raise BadResponse(f"unexpected response body from {self.where()}: {data!r:.200}")
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
                input_tokens=total_input,
                output_tokens=u.get("output_tokens") or 0,
                cached_input_tokens=cache_read,
            ),
        )

    # ------------------------------------------------------------------ preflight hooks
    probe_name = "prefill"

    @property
    def probe_wanted(self) -> bool:
        return self.prefill_setting == "auto"

    async def check_model(self) -> None:
        try:
            await self.retrying(lambda: self.client.models.retrieve(self.name), "model check")
        except Exception as e:  # noqa: BLE001 - turned into one clear line
            raise self.preflight_error(e) from e

    def _settle(self, ok: bool | None) -> None:
        if ok is None:
            return
        if not ok:
            self.notice(
                f"anthropic/{self.name} refuses assistant prefill (400): CoTs are asked "
                "for by instruction and answers are parsed from the reply (answer "
                "strategy 'parse'); results are not comparable with prefilled runs"
            )
        self.capabilities = Capabilities(prefill=bool(ok), logprobs=False, completion=False)

    async def _probe(self) -> bool:
        from anthropic import BadRequestError

        try:
            await self.retrying(
                lambda: self.client.messages.create(
                    model=self.name,
                    max_tokens=1,
                    messages=[
                        {"role": "user", "content": "Reply with OK."},
                        {"role": "assistant", "content": "O"},
                    ],
                ),
                "prefill probe",
            )
        except BadRequestError as e:
            if "prefill" in str(e).lower():
                return False
            raise self.preflight_error(e) from e
        except Exception as e:  # noqa: BLE001
            raise self.preflight_error(e) from e
        return True
