"""`mmstream`: run the service (`up`), one part of it (`gateway`, `worker KIND`), or a client."""

from __future__ import annotations

import argparse
import sys

from shared.config import WORKER_KINDS, Settings
from shared.logs import configure_logging


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmstream", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="Redis if needed, every worker kind and the gateway, on one machine")
    up.add_argument("--host", help="gateway address (default: MMSTREAM_HOST or 127.0.0.1)")
    up.add_argument("--port", type=int, help="gateway port (default: MMSTREAM_PORT or 8000)")

    gw = sub.add_parser("gateway", help="the websocket/HTTP gateway alone")
    gw.add_argument("--host")
    gw.add_argument("--port", type=int)

    worker = sub.add_parser("worker", help="one worker process of a kind")
    worker.add_argument("kind", choices=WORKER_KINDS)
    worker.add_argument("--name", help="worker name (default: kind-host-pid)")

    chat = sub.add_parser("chat", help="a terminal chat client that streams replies")
    chat.add_argument("--url", help="gateway websocket URL (default: ws://HOST:PORT/v1/realtime)")
    chat.add_argument("--instructions", help="system instructions for the session")
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--once", metavar="MESSAGE", help="send one message, print the reply, exit")

    models = sub.add_parser("models", help="list the configured models, resolving them (sha256-checked)")
    models.add_argument("--json", action="store_true", help="print JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {k: v for k in ("host", "port") if (v := getattr(args, k, None)) is not None}
    settings = Settings(**overrides)
    configure_logging(settings.log_level, args.command if args.command != "worker" else args.kind)

    if args.command == "up":
        from cli.up import up

        return up(settings)
    if args.command == "gateway":
        from cli.serve import serve_gateway

        serve_gateway(settings)
        return 0
    if args.command == "worker":
        from workers.runner import run_worker

        run_worker(args.kind, settings, args.name)
        return 0
    if args.command == "chat":
        from cli.chat import chat

        return chat(
            settings, url=args.url, instructions=args.instructions, temperature=args.temperature, once=args.once
        )
    if args.command == "models":
        from cli.models import list_models

        return list_models(settings, as_json=args.json)
    return 2


if __name__ == "__main__":
    sys.exit(main())
