"""A VLM in llama.cpp's two-file form (text GGUF + mmproj): the picture encoded on the image worker,
its embeddings fed by the decoder, gives token for token llama.cpp's own in-process reply (`mtmd`),
and the same picture again is not encoded again.

The models are tiny random-weight pairs (`training/tiny_vlm.py`), LLaVA-style and Gemma 3-style
(marks around the picture, attention both ways over it, token inputs scaled and pictures not): no
real VLM is reachable offline, and what is compared does not depend on the weights.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import io
import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers import Stack, realtime, running_stack, wait_for
from tests.pictures import image_message
from training.tiny_vlm import Family, TinyVlm, build

N_TOKENS = 12
SYSTEM = "Describe."
QUESTION = "What is this?"


def _cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mmstream" / "test-models"


@pytest.fixture(scope="module")
def vlm() -> TinyVlm:
    return build(_cache())


def _picture(seed: int) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def _ask(stack: Stack, png: bytes) -> str:
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    body = {
        "model": "tiny-vlm",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": QUESTION}],
            },
        ],
        "temperature": 0,
        "max_tokens": N_TOKENS,
    }
    reply = httpx.post(f"{stack.http}/v1/chat/completions", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["choices"][0]["message"]["content"])


def _reference(vlm: TinyVlm, png: bytes) -> str:
    """llama.cpp's own way: mtmd tokenizes the prompt with the picture, encodes and evaluates it."""
    import llama_cpp as C
    from llama_cpp import mtmd_cpp as M

    from workers.decoder.llama import ContextConfig, LlamaModel, TextStream

    model = LlamaModel(vlm.text, ContextConfig(n_ctx_per_seq=512, n_seq=1, n_batch=512, n_threads=1, n_gpu_layers=0))
    params = M.mtmd_context_params_default()
    params.use_gpu, params.n_threads, params.print_timings = False, 1, False
    mctx = M.mtmd_init_from_file(str(vlm.mmproj).encode(), model._model, params)
    assert mctx
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.uint8)
    bitmap = M.mtmd_bitmap_init(rgb.shape[1], rgb.shape[0], (ctypes.c_ubyte * rgb.size).from_buffer_copy(rgb.tobytes()))
    marker = M.mtmd_default_marker().decode()
    # The decoder's prompt: the file has no chat template, so ChatML.
    prompt = (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{marker}{QUESTION}<|im_end|>\n"
        "<|im_start|>assistant\n"
    ).encode()
    text = M.mtmd_input_text(prompt, len(prompt), False, True)
    chunks = M.mtmd_input_chunks_init()
    assert M.mtmd_tokenize(mctx, chunks, ctypes.byref(text), (M.mtmd_bitmap_p_ctypes * 1)(bitmap), 1) == 0
    n_past = C.llama_pos(0)
    assert M.mtmd_helper_eval_chunks(mctx, model._ctx, chunks, 0, 0, 512, True, ctypes.byref(n_past)) == 0
    stream, out, index, pos = TextStream(), [], -1, n_past.value
    for _ in range(N_TOKENS):
        token = int(np.argmax(model.logits(index)))
        if model.is_eog(token):
            break
        out.append(stream.push(model.piece(token)))
        model.decode([(token, pos, 0, True)])
        pos, index = pos + 1, 0
    out.append(stream.flush())
    M.mtmd_input_chunks_free(chunks)
    M.mtmd_bitmap_free(bitmap)
    M.mtmd_free(mctx)
    model.close()
    return "".join(out)


async def _stored_header(stack: Stack, png: bytes) -> dict[str, object]:
    """The header the image worker stored for a picture sent in a Realtime session (which keeps it)."""
    async with realtime(stack.ws) as rt:
        await rt.send(image_message("data:image/png;base64," + base64.b64encode(png).decode()))
        done = (await rt.until("conversation.item.done"))[-1]
        key = f"mmtest:image:{rt.events[0]['session']['id']}:item:{done['item']['id']}:0:emb"
        return dict(json.loads(stack.redis().hget(key, "header") or "{}"))


def _passes(stack: Stack) -> dict[str, int]:
    client = stack.redis()
    [record] = client.mget(client.keys("mmtest:worker:image:*"))
    return dict(json.loads(record or "{}").get("mmproj_passes", {}))


async def test_a_picture_gets_llama_cpps_own_reply(vlm: TinyVlm, fresh_redis_url: str, tmp_path: Path):
    settings = {"decoder_model": str(vlm.text), "decoder_mmproj": str(vlm.mmproj), "fusion_mode": "embed"}
    with running_stack(fresh_redis_url, tmp_path, audio=0, **settings) as stack:
        replies = []
        for seed in (0, 1):
            png = _picture(seed)
            replies.append(await asyncio.to_thread(_ask, stack, png))
            assert replies[-1] == _reference(vlm, png), f"picture {seed}"
        assert replies[0] != replies[1]  # the picture is what the model read
        # The same picture in another session: the same reply, from the image workers' cache.
        assert await asyncio.to_thread(_ask, stack, _picture(0)) == replies[0]
        await asyncio.to_thread(wait_for, lambda: _passes(stack) == {"encoder": 2, "cache": 1}, 10, "a cache hit")
        header = await _stored_header(stack, _picture(2))
    assert header["model"].startswith("mmproj:") and header["dtype"] == "float16"
    assert header["shape"] == [16, 64]  # 4 x 4 patches, in the text model's width


@pytest.mark.parametrize("family", ["gemma3", "idefics3"])
async def test_other_projectors_pictures_are_read_as_llama_cpp_reads_them(
    family: Family, fresh_redis_url: str, tmp_path: Path
):
    """Gemma 3: marks around the picture, attention both ways over it, token inputs scaled and the
    picture not. Idefics3 (SmolVLM): the picture cut into 2 x 2 tiles and an overview, with marks
    between them."""
    vlm = build(_cache(), family=family)
    settings = {"decoder_model": str(vlm.text), "decoder_mmproj": str(vlm.mmproj), "fusion_mode": "embed"}
    with running_stack(fresh_redis_url, tmp_path, audio=0, **settings) as stack:
        replies = [await asyncio.to_thread(_ask, stack, _picture(seed)) for seed in (0, 1)]
        assert replies == [_reference(vlm, _picture(seed)) for seed in (0, 1)]
        assert replies[0] != replies[1]
        header = await _stored_header(stack, _picture(2))
    layout = header["layout"]
    assert isinstance(layout, list)
    if family == "gemma3":
        start, end = _tokens(vlm, "<start_of_image>", "<end_of_image>")
        assert header["causal"] is False and header["shape"] == [16, 64]
        assert layout == [start, *[-1] * 16, end]
    else:
        assert header["causal"] is True and header["shape"] == [20, 64]  # 4 tiles and an overview, 4 tokens each
        tiles = "".join("#" if t < 0 else "." for t in layout).split(".")
        assert [len(run) for run in tiles if run] == [4] * 5
        [overview] = _tokens(vlm, "<global-img>")
        assert layout[layout.index(overview) + 1 :][:4] == [-1] * 4  # the overview


def _tokens(vlm: TinyVlm, *texts: str) -> list[int]:
    """The id of each special token, from one load of the text model's vocabulary."""
    from workers.decoder.llama import ContextConfig, LlamaModel

    model = LlamaModel(vlm.text, ContextConfig(n_ctx_per_seq=64, n_seq=1, n_batch=64, n_threads=1, n_gpu_layers=0))
    try:
        ids = [model.tokenize(text) for text in texts]
    finally:
        model.close()
    assert all(len(one) == 1 for one in ids), ids
    return [one[0] for one in ids]
