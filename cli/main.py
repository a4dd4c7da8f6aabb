"""`mmstream`: run the service (`up`), one part of it (`gateway`, `worker KIND`), or a client."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.config import WORKER_KINDS, Settings
from shared.logs import configure_logging


def _add_eval(sub: Any) -> None:
    ev = sub.add_parser("eval", help="answer a held-out question set through the running service")
    ev.add_argument(
        "--suite",
        choices=["fusion", "qa", "tools"],
        default="fusion",
        help="fusion: pictures and speech per fusion mode; qa: general questions with known answers; "
        "tools: function calling, exact match",
    )
    ev.add_argument(
        "--url",
        help="gateway websocket URL (default: ws://HOST:PORT/v1/realtime); for tools, any OpenAI-compatible "
        "base URL (default: http://HOST:PORT/v1)",
    )
    ev.add_argument("--model", help="tools: the model to ask for (default: the served model name)")
    ev.add_argument("--seed", type=int, default=1)
    ev.add_argument("--per-group", type=int, default=24, help="questions per group (colour, shape, ...)")
    ev.add_argument("--no-speech", action="store_true", help="leave out the spoken questions")
    ev.add_argument("--out", type=Path, help="results JSON (default: eval-results.json, qa- or tools-results.json)")


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

    train = sub.add_parser("train", help="train a model the project ships")
    train_sub = train.add_subparsers(dest="what", required=True)
    clip = train_sub.add_parser("clip", help="our small CLIP, on generated pictures")
    clip.add_argument("--seed", type=int, default=0)
    clip.add_argument("--steps", type=int, default=3000)
    clip.add_argument("--threads", type=int, default=2)
    clip.add_argument("--out", type=Path, help="checkpoint path (default: the bundled one)")
    proj = train_sub.add_parser("projector", help="a projector from an encoder to the language model's inputs")
    proj.add_argument("--modality", choices=["image", "audio"], default="image")
    proj.add_argument("--seed", type=int, default=0)
    proj.add_argument("--epochs", type=int, default=40)
    proj.add_argument("--train-images", type=int, default=8000, help="pictures (image)")
    proj.add_argument("--threads", type=int, default=2)
    proj.add_argument("--out", type=Path, help="projector path (default: the bundled one)")

    _add_eval(sub)

    batch = sub.add_parser("batch", help="push a folder of pictures and recordings through the Batch API")
    batch_sub = batch.add_subparsers(dest="what", required=True)
    brun = batch_sub.add_parser("run", help="send PATH (a folder, or a JSONL of requests); resumable")
    brun.add_argument("path", type=Path)
    brun.add_argument("--out", type=Path, default=Path("batch-results.jsonl"), help="results, one JSON per line")
    brun.add_argument("--url", help="gateway base URL (default: http://HOST:PORT)")
    brun.add_argument("--model", help="model id (default: MMSTREAM_SERVED_MODEL_NAME)")
    brun.add_argument("--prompt", default="Describe this picture in one sentence.", help="asked of each picture")
    brun.add_argument("--audio-prompt", default="", help="asked after each recording (default: answer its speech)")
    brun.add_argument("--max-tokens", type=int, default=128)
    brun.add_argument("--chunk", type=int, default=500, help="files per batch")
    brun.add_argument(
        "--temperature", type=float, default=0.0, help="sampling temperature of the answers (0: the same every run)"
    )

    models = sub.add_parser("models", help="list the configured models, resolving them (sha256-checked)")
    models.add_argument("--json", action="store_true", help="print JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {k: v for k in ("host", "port") if (v := getattr(args, k, None)) is not None}
    settings = Settings(**overrides)
    configure_logging(settings.log_level, args.command if args.command != "worker" else args.kind)
    return _COMMANDS[args.command](settings, args)


def _up(settings: Settings, _args: argparse.Namespace) -> int:
    from cli.up import up

    return up(settings)


def _gateway(settings: Settings, _args: argparse.Namespace) -> int:
    from cli.serve import serve_gateway

    serve_gateway(settings)
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from workers.runner import run_worker

    return run_worker(args.kind, settings, args.name)


def _chat(settings: Settings, args: argparse.Namespace) -> int:
    from cli.chat import chat

    return chat(settings, url=args.url, instructions=args.instructions, temperature=args.temperature, once=args.once)


def _train(settings: Settings, args: argparse.Namespace) -> int:
    if args.what == "projector":
        return _train_projector(settings, args)
    from training.clip import TrainConfig, train_clip

    config = TrainConfig(seed=args.seed, steps=args.steps, threads=args.threads)
    report = train_clip(config, **({"out": args.out} if args.out else {}))
    print(f"held-out zero-shot accuracy: {report.held_out_accuracy}  (seen pairs: {report.seen_accuracy})")
    return 0


def _train_projector(settings: Settings, args: argparse.Namespace) -> int:
    out = {"out": args.out} if args.out else {}
    if args.modality == "audio":
        from training.speech_projector import SpeechTrainConfig, train_speech_projector

        speech = train_speech_projector(SpeechTrainConfig(seed=args.seed, threads=args.threads), settings, **out)
        print(f"held-out token error rate: {speech.held_out_token_error_rate} ({speech.vocabulary} tokens)")
        print(f"{speech.seconds} s on {speech.device}; sha256 {speech.sha256}")
        return 0
    from training.image_projector import ProjectorTrainConfig, train_image_projector

    config = ProjectorTrainConfig(
        seed=args.seed, epochs=args.epochs, train_images=args.train_images, threads=args.threads
    )
    report = train_image_projector(config, settings, **out)
    print(f"held-out word accuracy per soft token: {report.held_out_word_accuracy}")
    print(f"held-out nearest-token accuracy over the whole vocabulary: {report.held_out_vocab_top1}")
    print(f"{report.seconds} s on {report.device}; sha256 {report.sha256}")
    return 0


def _eval(settings: Settings, args: argparse.Namespace) -> int:
    if args.suite == "tools":
        import logging

        from cli.tool_eval import evaluate_tools

        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request drowns the results
        base = args.url or f"http://{settings.host}:{settings.port}/v1"
        out = args.out or Path("tools-results.json")
        model = args.model or settings.served_model_name
        return evaluate_tools(base, model, out=out, headers=settings.auth_headers())
    url = args.url or f"ws://{settings.host}:{settings.port}/v1/realtime"
    if args.suite == "qa":
        from cli.qa_eval import evaluate_qa

        out = args.out or Path("qa-results.json")
        return evaluate_qa(url, out=out, speech=not args.no_speech, headers=settings.auth_headers())
    from cli.evaluate import evaluate

    return evaluate(
        url,
        seed=args.seed,
        per_group=args.per_group,
        out=args.out or Path("eval-results.json"),
        speech=not args.no_speech,
        headers=settings.auth_headers(),
    )


def _batch(settings: Settings, args: argparse.Namespace) -> int:
    import logging

    from cli.batch import BatchOptions, run

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll drowns the progress bar
    options = BatchOptions(
        base_url=args.url or f"http://{settings.host}:{settings.port}",
        model=args.model or settings.served_model_name,
        out=args.out,
        image_prompt=args.prompt,
        audio_prompt=args.audio_prompt,
        max_tokens=args.max_tokens,
        chunk=args.chunk,
        temperature=args.temperature,
        headers=settings.auth_headers(),
    )
    if not args.path.exists():
        print(f"{args.path} does not exist", file=sys.stderr)
        return 2
    return run(args.path, options)


def _models(settings: Settings, args: argparse.Namespace) -> int:
    from cli.models import list_models

    return list_models(settings, as_json=args.json)


_COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "up": _up,
    "gateway": _gateway,
    "worker": _worker,
    "chat": _chat,
    "train": _train,
    "eval": _eval,
    "batch": _batch,
    "models": _models,
}


if __name__ == "__main__":
    sys.exit(main())
