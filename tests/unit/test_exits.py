"""How a dead process's status is put into words, and which deaths a restart would only repeat."""

import signal

from shared.exits import EXIT_CANNOT_LOAD, describe_exit, exit_signal, worth_restarting


def test_signals_are_named_from_either_convention():
    assert exit_signal(-4) == signal.SIGILL  # subprocess
    assert exit_signal(132) == signal.SIGILL  # a shell, Docker
    assert exit_signal(1) is None and exit_signal(0) is None


def test_sigill_says_the_build_does_not_fit_the_cpu_and_what_to_do():
    text = describe_exit(-signal.SIGILL)
    assert "SIGILL" in text and "instructions this CPU lacks" in text and "MMSTREAM_DECODER_CPU_VARIANT" in text


def test_oom_kills_and_crashes_have_hints():
    assert "out-of-memory" in describe_exit(-signal.SIGKILL)
    assert "segmentation fault" in describe_exit(-signal.SIGSEGV)
    assert describe_exit(3) == "exited with status 3"
    assert "could not load its model" in describe_exit(EXIT_CANNOT_LOAD)


def test_only_exits_that_would_repeat_are_not_restarted():
    assert not worth_restarting(-signal.SIGILL)
    assert not worth_restarting(EXIT_CANNOT_LOAD)
    assert worth_restarting(-signal.SIGKILL) and worth_restarting(1)
