"""`python -m tests.fakeapi --api openai|anthropic ...`: a fake API server as its own process.

Prints "listening on http://127.0.0.1:PORT" (flushed) once it accepts connections; runs until
SIGTERM / SIGINT. The key comes from --key or the FAKEAPI_KEY environment variable (better:
command lines are visible to other users of the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from cotfaith.models.simulated import Knobs

from .anthropic_app import make_anthropic_app
from .common import FAULT_KINDS, PHASES, Faults, default_responder, echo_responder
from .openai_app import LLAMACPP, make_openai_app
from .runner import HOST, start_site


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.fakeapi", description=__doc__)
    p.add_argument("--api", choices=("openai", "anthropic"), required=True)
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    p.add_argument("--key", default=None, help="API key clients must send (or $FAKEAPI_KEY)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    p.add_argument("--models", type=_csv, default=None, help="comma-separated known models")
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--faults", type=_csv, default=[], help=f"kinds: {','.join(FAULT_KINDS)}")
    p.add_argument("--fault-seed", type=int, default=0)
    p.add_argument("--fail-first", type=int, default=0, help="first N requests get a 500")
    p.add_argument("--stall-seconds", type=float, default=5.0)
    p.add_argument("--trickle-seconds", type=float, default=5.0, help="how long a trickle takes")
    p.add_argument("--retry-after", type=float, default=0.2, help="seconds 429_retry_after asks")
    p.add_argument("--fault-phases", type=_csv, default=[], help=f"only these: {','.join(PHASES)}")
    p.add_argument(
        "--echo-key",
        choices=("masked", "full"),
        default=None,
        help="error messages quote the key the client sent",
    )
    p.add_argument("--no-prefill-models", type=_csv, default=[], help="anthropic only")
    p.add_argument("--no-logprobs-models", type=_csv, default=[], help="openai only")
    p.add_argument("--chatty-models", type=_csv, default=[], help="openai only")
    p.add_argument(
        "--llamacpp",
        action="store_true",
        help="openai only: behave as llama.cpp (continue_final_message and "
        "max_completion_tokens ignored, no /v1/models/{id})",
    )
    p.add_argument("--props-template", default=None, help="openai only: serve /props with it")
    p.add_argument("--echo", action="store_true", help="fixed short answer, no simulated model")
    p.add_argument("--organism-seed", type=int, default=0, help="Knobs.seed of the organism")
    return p


async def _serve(args: argparse.Namespace, key: str) -> None:
    faults = Faults(
        rate=args.fault_rate,
        kinds=tuple(args.faults),
        seed=args.fault_seed,
        fail_first=args.fail_first,
        stall_seconds=args.stall_seconds,
        trickle_seconds=args.trickle_seconds,
        retry_after=args.retry_after,
        phases=tuple(args.fault_phases),
    )
    responder = echo_responder if args.echo else default_responder(Knobs(seed=args.organism_seed))
    common = {
        "key": key,
        "responder": responder,
        "latency": args.latency,
        "faults": faults,
        "echo_key": args.echo_key,
    }
    if args.models:
        common["models"] = args.models
    if args.api == "openai":
        app = make_openai_app(
            no_logprobs_models=args.no_logprobs_models,
            chatty_models=args.chatty_models,
            props_template=(
                Path(args.props_template).read_text(encoding="utf-8")
                if args.props_template
                else None
            ),
            **(LLAMACPP if args.llamacpp else {}),
            **common,
        )
    else:
        app = make_anthropic_app(no_prefill_models=args.no_prefill_models, **common)
    runner, port = await start_site(app, args.port)
    print(f"listening on http://{HOST}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    key = args.key or os.environ.get("FAKEAPI_KEY")
    if not key:
        print("error: give --key or set FAKEAPI_KEY", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(args, key))
    except ValueError as e:  # bad fault settings: say which, without a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
