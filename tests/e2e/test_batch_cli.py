"""`mmstream batch run`: a folder through the running service, interrupted and resumed."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from tests.helpers import ROOT, Stack, wait_for
from tests.pictures import picture
from tests.speech import silence, speak, wav_bytes

SHAPES = [("circle", "red"), ("square", "blue"), ("triangle", "green"), ("circle", "yellow")]


def _folder(tmp_path: Path) -> Path:
    media = tmp_path / "media"
    (media / "sub").mkdir(parents=True)
    for shape, colour in SHAPES:
        (media / "sub" / f"{colour}-{shape}.png").write_bytes(_png(picture(shape, colour)))
    (media / "question.wav").write_bytes(wav_bytes(speak("What is the capital of France?") + silence(0.3)))
    (media / "readme.txt").write_text("not media")
    return media


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _command(stack: Stack, media: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "cli.main", "batch", "run", str(media), "--out", str(out), "--url", stack.http,
        "--prompt", "What colour is the shape? Answer with one word.", "--max-tokens", "8", *extra,
    ]  # fmt: skip


def _results(out: Path) -> dict[str, dict[str, object]]:
    lines = [json.loads(t) for t in out.read_text().splitlines()]
    by_file = {str(line["file"]): line for line in lines}
    assert len(by_file) == len(lines), "a file appears twice"
    return by_file


def test_a_folder_is_answered_file_by_file(stack: Stack, tmp_path: Path):
    media, out = _folder(tmp_path), tmp_path / "results.jsonl"
    run = subprocess.run(
        _command(stack, media, out), cwd=ROOT, capture_output=True, text=True, check=False, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert "5/5" in run.stderr and "skipping 1 files" in run.stderr
    results = _results(out)
    assert set(results) == {f"sub/{c}-{s}.png" for s, c in SHAPES} | {"question.wav"}
    for shape, colour in SHAPES:
        line = results[f"sub/{colour}-{shape}.png"]
        assert line["kind"] == "image" and line["error"] is None
        assert f"colour: {colour}" in str(line["tags"]) and f"shape: {shape}" in str(line["tags"])
        assert colour in str(line["answer"]).lower()
    spoken = results["question.wav"]
    assert "capital" in str(spoken["transcript"]).lower() and "Paris" in str(spoken["answer"])
    again = subprocess.run(
        _command(stack, media, out), cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )
    assert again.returncode == 0 and "5 already in" in again.stderr
    assert len(_results(out)) == 5


def test_an_interrupted_run_goes_on_where_it_stopped(stack: Stack, tmp_path: Path):
    media, out = _folder(tmp_path), tmp_path / "results.jsonl"
    state = out.with_name(out.name + ".batch")
    # Started as a script's background job is: with SIGINT ignored, which Python then leaves
    # ignored unless the program handles it itself (such a run went on to the end and exited 0).
    ignoring_sigint = ["bash", "-c", 'trap "" INT; exec "$@"', "-"]
    first = subprocess.Popen(
        [*ignoring_sigint, *_command(stack, media, out, "--chunk", "2")], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    wait_for(lambda: state.exists() and out.exists(), 120, "the second batch of the run")
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=30)
    assert first.returncode == 130, stderr
    assert state.exists()  # the batch in flight is remembered
    done_before = len(_results(out))
    assert 0 < done_before < 5
    time.sleep(0.5)
    second = subprocess.run(
        _command(stack, media, out, "--chunk", "2"), cwd=ROOT, capture_output=True, text=True, check=False, timeout=300
    )
    assert second.returncode == 0, second.stderr
    assert "following batch" in second.stderr
    assert len(_results(out)) == 5 and not state.exists()


def test_a_jsonl_of_requests_with_a_bad_line(stack: Stack, tmp_path: Path):
    good = {
        "custom_id": "france",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "qwen2.5-coder-0.5b-instruct",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 4,
        },
    }
    requests = tmp_path / "requests.jsonl"
    requests.write_text("not json at all\n" + json.dumps(good) + "\n")
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "cli.main", "batch", "run", str(requests), "--out", str(out), "--url", stack.http]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 2, run.stderr  # finished, with an error among the results
    lines = {line["custom_id"]: line for line in map(json.loads, out.read_text().splitlines())}
    assert set(lines) == {"line-1", "france"}
    assert lines["line-1"]["error"]["code"] == "invalid_json"
    assert lines["france"]["response"]["status_code"] == 200
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, timeout=60)
    assert "2 already in" in again.stderr  # the bad line is not sent again either
