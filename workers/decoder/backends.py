"""Loads llama.cpp's compute backends: the best CPU variant this machine can run, and any GPU backend.

scripts/install.sh builds llama.cpp with `GGML_BACKEND_DL` and `GGML_CPU_ALL_VARIANTS`: the CPU code
is one `libggml-cpu-<variant>.so` per instruction-set level (x64, sse42, haswell, skylakex, zen4,
sapphirerapids...) next to `libllama.so`, and nothing runs until a backend is loaded. ggml's own
choice reads CPUID only ("this does not check for OS support", its source says), so a VM that
reports AVX-512 or AMX without enabling it would get a library it cannot run. Here a variant must
pass both: ggml's score (CPUID) and the flags the kernel lists in /proc/cpuinfo, which it clears
for features the OS has not enabled. A variant whose code is known to crash is passed over too
(`KNOWN_BROKEN`), and the decoder proves its choice in a child process before using it, falling
back to the next variant when that child dies (`workers/decoder/selftest.py`).
`MMSTREAM_DECODER_CPU_VARIANT` pins one by name.

A library built without `GGML_BACKEND_DL` has its CPU backend linked in; that is reported as the
variant "built-in".
"""

from __future__ import annotations

import _ctypes
import ctypes
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# What each variant of ggml/src/CMakeLists.txt (GGML_CPU_ALL_VARIANTS, x86) is compiled for, as
# /proc/cpuinfo flag names. A variant not listed here is judged by ggml's score alone.
_AVX512 = ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")
_HASWELL = ("sse4_2", "avx", "f16c", "fma", "avx2", "bmi2")
VARIANT_FLAGS: dict[str, tuple[str, ...]] = {
    "x64": (),
    "sse42": ("sse4_2",),
    "sandybridge": ("sse4_2", "avx"),
    "ivybridge": ("sse4_2", "avx", "f16c"),
    "piledriver": ("sse4_2", "avx", "f16c", "fma"),
    "haswell": _HASWELL,
    "skylakex": (*_HASWELL, *_AVX512),
    "cannonlake": (*_HASWELL, *_AVX512, "avx512vbmi"),
    "cascadelake": (*_HASWELL, *_AVX512, "avx512_vnni"),
    "icelake": (*_HASWELL, *_AVX512, "avx512vbmi", "avx512_vnni"),
    "cooperlake": (*_HASWELL, *_AVX512, "avx512_vnni", "avx512_bf16"),
    "zen4": (*_HASWELL, *_AVX512, "avx512vbmi", "avx512_vnni", "avx512_bf16"),
    "alderlake": (*_HASWELL, "avx_vnni"),
    "sapphirerapids": (*_HASWELL, *_AVX512, "avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"),
}

# Variants never chosen unless pinned, and why. On an Intel Xeon VM that reports and enables AMX
# (the kernel grants the tile-data permission), the sapphirerapids variant dies of SIGILL at its first
# `tilezero` during a prompt: its tile configuration is compiled wrong (ggml-org/llama.cpp#26954).
KNOWN_BROKEN: dict[str, str] = {
    "sapphirerapids": "its AMX matrix code dies of SIGILL in this llama.cpp (ggml-org/llama.cpp#26954)",
}

BUILT_IN = "built-in"
_PREFIX, _SUFFIX = "libggml-cpu-", ".so"


class BackendError(RuntimeError):
    """No CPU backend this machine can run could be loaded."""


@dataclass(frozen=True)
class Backends:
    cpu_variant: str  # "haswell", ..., or "built-in"
    cpu_features: tuple[str, ...]  # what the loaded CPU code uses, as ggml lists it ("AVX2", "FMA", ...)
    devices: tuple[str, ...]  # every device llama.cpp may use ("CPU", "CUDA0", ...)

    def describe(self) -> str:
        features = " ".join(self.cpu_features) or "no SIMD"
        return f"CPU backend {self.cpu_variant} ({features}); devices {', '.join(self.devices)}"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU flags the kernel lists (those of the first processor)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def choose_variant(
    scores: Mapping[str, int], flags: frozenset[str], pinned: str = "auto", exclude: Iterable[str] = ()
) -> str:
    """The variant to load: the pinned one, else the best ggml score among those the kernel's flags
    allow, passing over `KNOWN_BROKEN` and `exclude` (variants that failed here).

    `scores` holds ggml's own score of each installed variant (0: CPUID says it cannot run).
    """
    if pinned != "auto":
        if pinned not in scores:
            raise BackendError(f"CPU variant {pinned!r} is not installed; installed: {', '.join(sorted(scores))}")
        if scores[pinned] <= 0:
            can = ", ".join(sorted(_usable(scores, flags))) or "none"
            raise BackendError(f"CPU variant {pinned!r} needs instructions this CPU lacks; these can run: {can}")
        return pinned
    usable = _usable(scores, flags)
    if not usable:
        raise BackendError(f"none of the installed CPU variants ({', '.join(sorted(scores))}) can run on this CPU")
    skip = set(KNOWN_BROKEN) | set(exclude)
    candidates = {tag: score for tag, score in usable.items() if tag not in skip}
    if not candidates:
        raise BackendError(f"every CPU variant this CPU can run failed here: {', '.join(sorted(usable))}")
    return max(candidates, key=lambda tag: candidates[tag])


def allowed_by_kernel(tag: str, flags: frozenset[str]) -> bool:
    """Whether the kernel lists every feature a variant is compiled for (unknown variants: yes)."""
    if not flags:  # no /proc/cpuinfo to read: ggml's score decides
        return True
    return all(flag in flags for flag in VARIANT_FLAGS.get(tag, ()))


def _usable(scores: Mapping[str, int], flags: frozenset[str]) -> dict[str, int]:
    """The variants both CPUID (ggml's score) and the kernel's flags allow, with their scores."""
    return {tag: score for tag, score in scores.items() if score > 0 and allowed_by_kernel(tag, flags)}


# --- loading ---------------------------------------------------------------------------------------

_lock = threading.Lock()
_loaded: list[Backends] = []  # ggml keeps one registry per process: what was loaded into it


def pick_variant(lib_dir: Path, pinned: str = "auto", exclude: Iterable[str] = ()) -> str:
    """The CPU variant `load_backends` would load, without loading it (BUILT_IN for a build without)."""
    variants = _variants(lib_dir)
    if not variants:
        return BUILT_IN
    return choose_variant(_scores(variants, pinned), cpu_flags(), pinned, exclude)


def load_backends(lib_dir: Path, pinned: str = "auto") -> Backends:
    """Load the backends once per process; later calls return what the first loaded."""
    with _lock:
        if _loaded:
            if pinned not in ("auto", _loaded[0].cpu_variant):
                raise BackendError(f"CPU variant {_loaded[0].cpu_variant} is already loaded in this process")
            return _loaded[0]
        backends = _load(lib_dir, pinned)
        _loaded.append(backends)
        log.info("llama.cpp %s", backends.describe())
        return backends


def _variants(lib_dir: Path) -> dict[str, Path]:
    files = sorted(lib_dir.glob(f"{_PREFIX}*{_SUFFIX}"))
    return {path.name.removeprefix(_PREFIX).removesuffix(_SUFFIX): path for path in files}


def _scores(variants: Mapping[str, Path], pinned: str) -> dict[str, int]:
    # A variant's score function is compiled without the variant's instruction flags
    # (cpu-feats.cpp), so asking is safe; variants the kernel rules out are not even opened.
    flags = cpu_flags()
    return {
        tag: _score(path) if allowed_by_kernel(tag, flags) or tag == pinned else 0 for tag, path in variants.items()
    }


def _load(lib_dir: Path, pinned: str) -> Backends:
    ggml = _ggml(lib_dir)
    tag = pick_variant(lib_dir, pinned)
    if tag != BUILT_IN:
        path = lib_dir / f"{_PREFIX}{tag}{_SUFFIX}"
        if not ggml.ggml_backend_load(str(path).encode()):
            raise BackendError(f"llama.cpp could not load its CPU variant {path}")
    elif pinned not in ("auto", BUILT_IN):
        raise BackendError(f"CPU variant {pinned!r} asked for, but this llama.cpp build has its CPU code built in")
    for path in _other_backends(lib_dir):  # GPU backends of a CUDA (or other) build
        if not ggml.ggml_backend_load(str(path).encode()):
            log.warning("llama.cpp backend %s did not load (no device or driver?)", path.name)
    cpu = ggml.ggml_backend_reg_by_name(b"CPU")
    if not cpu:
        raise BackendError(f"llama.cpp has no CPU backend after loading from {lib_dir}")
    return Backends(tag, _features(ggml, cpu), _devices(ggml))


def _other_backends(lib_dir: Path) -> Iterable[Path]:
    for path in sorted(lib_dir.glob(f"libggml-*{_SUFFIX}")):
        if not path.name.startswith(_PREFIX) and path.name != "libggml-base.so":
            yield path


def _ggml(lib_dir: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(_mapped_ggml(lib_dir)))
    lib.ggml_backend_load.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_load.restype = ctypes.c_void_p
    lib.ggml_backend_reg_by_name.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_reg_by_name.restype = ctypes.c_void_p
    lib.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_dev_name.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_name.restype = ctypes.c_char_p
    return lib


def _mapped_ggml(lib_dir: Path) -> Path:
    """The libggml file the dynamic loader mapped for libllama.

    The wheel holds libggml.so, .so.0 and .so.0.x as separate copies, and each copy opened is
    another library with its own (empty) backend registry: only the one libllama uses will do.
    """
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = Path(line.split(maxsplit=5)[-1]) if line.count(" ") >= 5 else None
        if path is not None and path.parent == lib_dir.resolve() and path.name.startswith("libggml.so"):
            return path
    return lib_dir / "libggml.so"  # libllama not loaded yet: this copy is the one it will find


def _score(path: Path) -> int:
    """ggml's own score of a CPU variant (0: it cannot run here), from the library's exported function."""
    try:
        lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_LOCAL)
    except OSError as exc:
        log.warning("cannot open %s: %s", path.name, exc)
        return 0
    try:
        score = getattr(lib, "ggml_backend_score", None)
        if score is None:
            return 0
        score.restype = ctypes.c_int
        return int(score())
    finally:
        _ctypes.dlclose(lib._handle)  # the chosen one is opened again by ggml_backend_load


class _Feature(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_char_p)]


def _features(ggml: ctypes.CDLL, reg: int) -> tuple[str, ...]:
    address = ggml.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_get_features")
    if not address:
        return ()
    get = ctypes.CFUNCTYPE(ctypes.POINTER(_Feature), ctypes.c_void_p)(address)
    features, out = get(reg), []
    i = 0
    while features[i].name:
        name, value = features[i].name.decode(), (features[i].value or b"").decode()
        out.append(name if value == "1" else f"{name}={value}")
        i += 1
    return tuple(out)


def _devices(ggml: ctypes.CDLL) -> tuple[str, ...]:
    count = ggml.ggml_backend_dev_count()
    return tuple(ggml.ggml_backend_dev_name(ggml.ggml_backend_dev_get(i)).decode() for i in range(count))
