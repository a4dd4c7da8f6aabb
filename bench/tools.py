"""Function calling against llama.cpp's own llama-server `--jinja`, on the same model files, in one run.

For each model: the held-out set of `mmstream eval --suite tools` (`cli/tool_set.py`, exact match)
through mmstream with the tool grammar (the default) and without it (`MMSTREAM_DECODER_TOOL_GRAMMAR=false`),
and through `llama-server --jinja` built from the pinned llama.cpp with our CPU code (`bench/llama_server.py`).
Each side serves four sequences and is asked four cases at a time, greedy. Then what the grammar costs:
the same forced calls (`tool_choice: required`) one at a time with and without it, generated tokens/s in
the engine itself (where the grammar runs).

    python -m bench.tools [--models M ...] [--skip-llama-server]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench import llama_server
from bench.stack import bench_stack, free_port
from cli.tool_eval import run_tool_eval
from cli.tool_set import FUNCTIONS, tool_set
from shared.config import DEFAULT_DECODER_MODEL, SMALL_DECODER_MODEL, Settings, model_id
from shared.models import resolve_model

_PARALLEL = 4
_N_CTX = 4096


def grammar_cost(spec: str, threads: int) -> tuple[float, float]:
    """Generated tokens/s of the same forced calls with the tool grammar and without, in the engine itself
    (where the grammar runs), one at a time, alternating twice: (with, without)."""
    from shared.messages import FunctionTool, GenerateRequest, InputText, MessageItem
    from workers.decoder.engine import Done, Engine, Job
    from workers.decoder.grammar import reply_grammar
    from workers.decoder.llama import ContextConfig, LlamaModel
    from workers.decoder.prompt import ChatTemplate, build_prompt

    model = LlamaModel(
        resolve_model(spec, Settings().models_dir).path,
        ContextConfig(n_ctx_per_seq=_N_CTX, n_seq=1, n_batch=512, n_threads=threads, n_gpu_layers=0),
    )
    template = ChatTemplate(
        model.meta("tokenizer.chat_template"),
        bos_token=model.special_token("bos"),
        eos_token=model.special_token("eos"),
    )
    engine = Engine(model)
    totals = {True: [0, 0.0], False: [0, 0.0]}  # grammar -> [tokens after the first, seconds]
    try:
        for grammar in (True, False, True, False):
            for case in [c for c in tool_set() if c.kind == "call"][:16]:
                tools = [FunctionTool(name=n, **FUNCTIONS[n]) for n in case.tools]
                items = [
                    MessageItem(role="user", content=[InputText(type="input_text", text=case.messages[0]["content"])])
                ]
                request = GenerateRequest(
                    response_id="r",
                    session_id="s",
                    item_ids=[],
                    temperature=0,
                    top_p=1,
                    max_output_tokens=64,
                    tools=tools,
                    tool_choice="required",
                )
                prompt = build_prompt(template, model.tokenize, items, "", _N_CTX - 64, tools=tools)
                assert prompt is not None
                job = Job(
                    prompt=prompt.tokens,
                    resume=[],
                    vectors={},
                    grammar=reply_grammar(request) if grammar else None,
                    max_new_tokens=64,
                    temperature=0,
                    top_p=1,
                    seed=1,
                    deadline=time.monotonic() + 120,
                )
                engine.submit(job)
                first = last = 0.0
                n = 0
                while not isinstance(job.events.get(timeout=120), Done):
                    last = time.perf_counter()
                    first = first or last
                    n += 1
                totals[grammar][0] += max(n - 1, 0)
                totals[grammar][1] += last - first
    finally:
        engine.stop()
        model.close()
    return totals[True][0] / totals[True][1], totals[False][0] / totals[False][1]


def ours(spec: str, *, grammar: bool) -> dict[str, Any]:
    settings = {
        "decoder_model": spec,
        "decoder_concurrency": str(_PARALLEL),
        "decoder_n_ctx": str(_N_CTX),
        "decoder_tool_grammar": "true" if grammar else "false",
        "decoder_omp_wait_policy": "passive",
    }
    with bench_stack({"decode": 1}, **settings) as stack:
        return asyncio.run(run_tool_eval(f"{stack.http}/v1", model_id(spec)))


def theirs(path: Path, bin_dir: Path, threads: int) -> dict[str, Any]:
    with llama_server.llama_server(
        bin_dir, path, parallel=_PARALLEL, n_ctx_per_seq=_N_CTX, threads=threads, port=free_port(), extra=["--jinja"]
    ) as server:
        return asyncio.run(run_tool_eval(f"{server.base}/v1", path.stem))


def _row(name: str, result: dict[str, Any]) -> str:
    s = result["summary"]
    kinds = " | ".join(f"{v:.0%}" for v in s["by_kind"].values())
    return (
        f"| {name} | {s['accuracy']:.1%} | {kinds} | {s['parse_rate']:.0%} / {s['valid_rate']:.0%} "
        f"| {s['calls_as_text']} | {result['seconds']:.0f} s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[SMALL_DECODER_MODEL, DEFAULT_DECODER_MODEL])
    parser.add_argument("--skip-llama-server", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench-tools.json"))
    args = parser.parse_args()
    settings = Settings()
    bin_dir = None
    if not args.skip_llama_server:
        bin_dir = llama_server.ensure_built()
    saved: dict[str, Any] = {}
    for spec in args.models:
        path = resolve_model(spec, settings.models_dir).path
        results = {"mmstream, grammar": ours(spec, grammar=True), "mmstream, no grammar": ours(spec, grammar=False)}
        if bin_dir is not None:
            variant = llama_server.decoder_cpu_variant(path)
            llama_server.link_cpu_backend(bin_dir, variant)
            results["llama-server --jinja"] = theirs(path, bin_dir, settings.decoder_threads)
        kinds = " | ".join(next(iter(results.values()))["summary"]["by_kind"])
        print(f"\n{model_id(spec)}: {len(tool_set())} cases, exact match")
        print(f"| server | accuracy | {kinds} | calls parse / validate | calls left as text | time |")
        print("|---|---|" + "---|" * len(next(iter(results.values()))["summary"]["by_kind"]) + "---|---|---|")
        for name, result in results.items():
            print(_row(name, result))
        with_g, without = results["mmstream, grammar"]["tokens_per_s"], results["mmstream, no grammar"]["tokens_per_s"]
        print(
            f"forced calls, one at a time: {with_g:.1f} tokens/s with the grammar, {without:.1f} without "
            f"({with_g / without:.2f}x)"
        )
        saved[model_id(spec)] = results
    args.out.write_text(json.dumps(saved, indent=2))
    print(f"\nsaved to {args.out}")


if __name__ == "__main__":
    main()
