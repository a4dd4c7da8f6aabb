"""Why a process ended, in words a person can act on: the one place that reads exit statuses.

`subprocess` reports death by a signal as a negative return code; a shell or Docker reports it
as 128 + the signal's number. Both are named here, with a hint for the signals that mean the
machine, not the code, is wrong.
"""

from __future__ import annotations

import signal

# A worker whose model cannot be loaded exits with this (sysexits' EX_CONFIG): starting it again
# will not help, so `mmstream up` does not.
EXIT_CANNOT_LOAD = 78

_HINTS = {
    signal.SIGILL: (
        "illegal instruction: the llama.cpp build uses instructions this CPU lacks. Run `make install` "
        "again (it builds for every x86-64 CPU unless MMSTREAM_LLAMA_CMAKE_ARGS says otherwise), or pin "
        "an older variant with MMSTREAM_DECODER_CPU_VARIANT (e.g. haswell)"
    ),
    signal.SIGSEGV: "segmentation fault: a crash in native code (a corrupt model file, or a bug)",
    signal.SIGBUS: "bus error: a memory-mapped file (the model?) was truncated or is on failing storage",
    signal.SIGKILL: "killed: most often by the kernel's out-of-memory killer (see `dmesg`); a smaller model "
    "or fewer workers need less memory",
    signal.SIGABRT: "aborted: native code gave up (its own message is in the log just above)",
    signal.SIGFPE: "arithmetic fault in native code",
}

# Signals that will come again at once if the process is started again as it was.
DETERMINISTIC = frozenset({signal.SIGILL})


def exit_signal(returncode: int) -> signal.Signals | None:
    """The signal a process died of, from a subprocess return code (-N) or a shell's status (128+N)."""
    number = -returncode if returncode < 0 else returncode - 128 if 128 < returncode < 128 + 65 else 0
    try:
        return signal.Signals(number) if number else None
    except ValueError:
        return None


def describe_exit(returncode: int) -> str:
    """'exited with 1', 'was killed by SIGILL (illegal instruction: ...)', 'could not load its model'."""
    if returncode == EXIT_CANNOT_LOAD:
        return "could not load its model (the reason is in its log above)"
    sig = exit_signal(returncode)
    if sig is None:
        return f"exited with status {returncode}"
    hint = _HINTS.get(sig)
    return f"was killed by {sig.name}" + (f" ({hint})" if hint else "")


def worth_restarting(returncode: int) -> bool:
    """False for exits that a restart would only repeat."""
    sig = exit_signal(returncode)
    return returncode != EXIT_CANNOT_LOAD and (sig is None or sig not in DETERMINISTIC)
