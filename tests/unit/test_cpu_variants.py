"""Which llama.cpp CPU variant a machine gets: ggml's CPUID score, vetoed by the kernel's flags."""

from pathlib import Path

import pytest

from workers.decoder.backends import (
    KNOWN_BROKEN,
    VARIANT_FLAGS,
    BackendError,
    allowed_by_kernel,
    choose_variant,
    cpu_flags,
)

# /proc/cpuinfo flags of the machines we met (abridged to what matters here).
EPYC_AVX2 = frozenset(["fpu", "sse", "sse2", "ssse3", "sse4_1", "sse4_2", "avx", "f16c", "fma", "bmi1", "bmi2", "avx2"])
AVX512 = {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw", "avx512vbmi", "avx512_vnni", "avx512_bf16"}
ZEN4 = EPYC_AVX2 | AVX512
NEHALEM = frozenset(["fpu", "sse", "sse2", "ssse3", "sse4_1", "sse4_2"])


def _scores(cpuid: frozenset[str]) -> dict[str, int]:
    """What ggml's score says on a CPU whose CPUID reports `cpuid`: > 0 where every feature is there,
    larger for variants with more (the same order as ggml's bit weights)."""
    return {tag: (1 + len(flags)) if all(f in cpuid for f in flags) else 0 for tag, flags in VARIANT_FLAGS.items()}


def test_an_avx2_machine_gets_haswell():
    assert choose_variant(_scores(EPYC_AVX2), EPYC_AVX2) == "haswell"


def test_zen4_gets_zen4_and_nehalem_sse42():
    assert choose_variant(_scores(ZEN4), ZEN4) == "zen4"
    assert choose_variant(_scores(NEHALEM), NEHALEM) == "sse42"


def test_avx512_that_cpuid_reports_but_the_kernel_does_not_enable_is_not_used():
    # A VM whose CPUID says AVX-512 while the OS has not enabled it: the kernel leaves the flags out.
    assert choose_variant(_scores(ZEN4), EPYC_AVX2) == "haswell"


def test_amx_reported_but_not_enabled_is_not_used():
    spr = ZEN4 | {"amx_tile", "amx_int8"}
    assert choose_variant(_scores(spr), ZEN4) == "zen4"


def test_a_variant_known_to_crash_is_chosen_only_when_pinned():
    # An Intel Xeon VM with AMX enabled: the sapphirerapids code died of SIGILL at its first tilezero.
    spr = ZEN4 | {"amx_tile", "amx_int8"}
    assert "sapphirerapids" in KNOWN_BROKEN
    assert choose_variant(_scores(spr), spr) == "zen4"
    assert choose_variant(_scores(spr), spr, "sapphirerapids") == "sapphirerapids"


def test_variants_that_failed_here_are_passed_over():
    assert choose_variant(_scores(ZEN4), ZEN4, exclude=["zen4"]) == "icelake"
    with pytest.raises(BackendError, match="failed here"):
        choose_variant(_scores(NEHALEM), NEHALEM, exclude=["sse42", "x64"])


def test_an_emulated_older_cpu_is_judged_by_cpuid_too():
    # Under qemu-user /proc/cpuinfo is the host's: ggml's score (CPUID, emulated) must also agree.
    assert choose_variant(_scores(NEHALEM), EPYC_AVX2) == "sse42"


def test_a_pinned_variant_is_loaded_when_it_can_run_and_refused_clearly_when_not():
    scores = _scores(EPYC_AVX2)
    assert choose_variant(scores, EPYC_AVX2, "sse42") == "sse42"
    with pytest.raises(BackendError, match="lacks"):
        choose_variant(scores, EPYC_AVX2, "skylakex")
    with pytest.raises(BackendError, match="not installed"):
        choose_variant(scores, EPYC_AVX2, "pentium")


def test_nothing_runnable_says_so():
    with pytest.raises(BackendError, match="none of the installed"):
        choose_variant({"haswell": 0}, NEHALEM)


def test_unknown_variants_and_unreadable_flags_leave_it_to_ggml():
    assert allowed_by_kernel("a-future-variant", NEHALEM)
    assert allowed_by_kernel("zen4", frozenset())


def test_cpu_flags_reads_the_first_processor(tmp_path: Path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse4_2 avx2\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "sse4_2", "avx2"}
    assert cpu_flags(tmp_path / "missing") == frozenset()
