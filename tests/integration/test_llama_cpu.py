"""The installed llama.cpp on this CPU and on CPUs we do not have (qemu-user emulates older ones).

QEMU emulates AVX2 but not AVX-512, so a library that needs AVX-512 dies under `-cpu Haswell` as it
did on an AMD EPYC without it; `-cpu Nehalem` has no AVX at all.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings
from shared.errors import ModelError
from shared.models import resolve_model
from tests.helpers import ROOT
from workers.decoder.backends import KNOWN_BROKEN, VARIANT_FLAGS, allowed_by_kernel, cpu_flags
from workers.decoder.selftest import check_in_child, probe


@pytest.fixture(scope="module")
def model() -> Path:
    # Any GGUF shows which code runs; the smallest bundled one (SmolLM2-135M, the sentence-end
    # model) halves the time of a token under emulation.
    settings = Settings()
    return resolve_model("bundled:smollm2-135m-instruct-q4_1", settings.models_dir, wheels_dir=settings.wheels_dir).path


def _qemu() -> str:
    path = shutil.which("qemu-x86_64")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("qemu-x86_64 is missing: .ci/run installs Debian's qemu-user")
        pytest.skip("qemu-x86_64 is not installed (apt-get install qemu-user)")
    return path


def _selftest(model: Path, *, cpu: str | None = None, tokens: int = 1, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "workers.decoder.selftest", "--model", str(model), "--tokens", str(tokens)]
    if cpu is not None:
        command = [_qemu(), "-cpu", cpu, *command]
        # numpy's OpenBLAS picks its kernels from CPUID, which qemu only partly emulates: on an AMD EPYC
        # host it chose code the emulated Nehalem lacks and `import numpy` died of SIGILL. Naming the core
        # (the qemu model names are OpenBLAS core names) keeps this test about llama.cpp's choice.
        env = {"OPENBLAS_CORETYPE": cpu, **env}
    return subprocess.run(
        command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=600, check=False
    )


def _report(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert run.returncode == 0, run.stderr[-3000:]
    report: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return report


def _installed() -> set[str]:
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib"
    return {p.name.removeprefix("libggml-cpu-").removesuffix(".so") for p in lib.glob("libggml-cpu-*.so")}


def test_one_build_carries_every_x86_variant():
    assert _installed() >= set(VARIANT_FLAGS), "scripts/install.sh builds with GGML_CPU_ALL_VARIANTS"


def _runnable_here() -> list[str]:
    flags = cpu_flags()
    return [
        tag
        for tag in _installed()
        if tag in VARIANT_FLAGS and allowed_by_kernel(tag, flags) and tag not in KNOWN_BROKEN
    ]


def _best(tags: list[str]) -> int:
    return max(len(VARIANT_FLAGS[t]) for t in tags)


def test_this_machine_gets_the_best_variant_it_can_run(model: Path):
    report = _report(_selftest(model, tokens=4))
    runnable = _runnable_here()
    assert report["cpu_variant"] in runnable
    assert len(VARIANT_FLAGS[report["cpu_variant"]]) == _best(runnable)
    assert report["tokens"] == 4 and report["text"].strip()


def test_an_emulated_haswell_runs_the_avx2_code(model: Path):
    runnable = _runnable_here()
    if "haswell" in runnable and len(VARIANT_FLAGS["haswell"]) == _best(runnable):
        # Emulated AVX2 is slow (30 s on such a machine); the test above ran the same code for real.
        pytest.skip("this CPU's best is the haswell code, which the test above ran on it")
    report = _report(_selftest(model, cpu="Haswell"))
    assert report["cpu_variant"] == "haswell"
    assert "AVX2" in report["cpu_features"] and not any(f.startswith("AVX512") for f in report["cpu_features"])
    assert report["tokens"] == 1 and report["text"].strip()


def test_an_emulated_cpu_without_avx_runs_the_sse42_code(model: Path):
    report = _report(_selftest(model, cpu="Nehalem"))
    assert report["cpu_variant"] == "sse42"
    assert not any(f.startswith("AVX") for f in report["cpu_features"])
    assert report["tokens"] == 1 and report["text"].strip()


def test_a_pinned_variant_the_cpu_lacks_is_refused_before_any_of_it_runs(model: Path):
    run = _selftest(model, cpu="Nehalem", MMSTREAM_DECODER_CPU_VARIANT="haswell")
    assert run.returncode == 2
    assert "'haswell' needs instructions this CPU lacks" in run.stderr and "sse42" in run.stderr


def test_a_self_test_child_killed_by_sigill_is_named_with_what_to_do(model: Path):
    dies = [sys.executable, "-c", f"import os; os.kill(os.getpid(), {int(signal.SIGILL)})"]
    with pytest.raises(ModelError) as caught:
        check_in_child(model, threads=1, argv=dies)
    assert "SIGILL" in str(caught.value) and "instructions this CPU lacks" in str(caught.value)


# A child that says which variant it runs, as the real one does, and dies of SIGILL on the first two.
_DIES_ON_BEST = f"""
import json, os, sys
excluded = [sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "--exclude-variant"]
variant = next(v for v in ["sapphirerapids", "zen4", "icelake"] if v not in excluded)
print("selftest: CPU variant " + variant, file=sys.stderr, flush=True)
if variant != "icelake":
    os.kill(os.getpid(), {int(signal.SIGILL)})
print(json.dumps({{"cpu_variant": variant}}))
"""


def test_a_variant_that_dies_in_the_self_test_is_passed_over_for_the_next(model: Path):
    report = probe(model, threads=1, argv=[sys.executable, "-c", _DIES_ON_BEST])
    assert report["cpu_variant"] == "icelake"
    assert list(report["passed_over"]) == ["sapphirerapids", "zen4"]
    assert all("SIGILL" in how for how in report["passed_over"].values())


def test_a_pinned_variant_that_dies_is_not_replaced(model: Path):
    with pytest.raises(ModelError, match="sapphirerapids was killed by SIGILL"):
        probe(model, threads=1, cpu_variant="sapphirerapids", argv=[sys.executable, "-c", _DIES_ON_BEST])


def test_the_installed_library_passes_its_probe_here(model: Path):
    report = probe(model, threads=2, tokens=2)
    assert report["cpu_variant"] not in KNOWN_BROKEN and report["tokens"] == 2


def test_a_passing_report_is_kept_and_reused_until_what_it_depends_on_changes(model: Path, tmp_path: Path):
    always_dies = [sys.executable, "-c", f"import os; os.kill(os.getpid(), {int(signal.SIGILL)})"]
    first = probe(model, threads=1, argv=[sys.executable, "-c", _DIES_ON_BEST], cache=tmp_path)
    assert first["cpu_variant"] == "icelake" and "cached" not in first
    again = probe(model, threads=1, argv=always_dies, cache=tmp_path)  # no child runs
    assert again == {**first, "cached": True}
    with pytest.raises(ModelError):  # another variant asked for: tested afresh
        probe(model, threads=1, cpu_variant="zen4", argv=always_dies, cache=tmp_path)
    next(tmp_path.glob("*.json")).write_text("{}")  # damaged: tested afresh
    with pytest.raises(ModelError):
        probe(model, threads=1, argv=always_dies, cache=tmp_path)
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(b"x")
    with pytest.raises(ModelError):  # another model file
        probe(copy, threads=1, argv=always_dies, cache=tmp_path)
