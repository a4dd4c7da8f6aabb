"""The speech worker: reply text to a voice (Piper)."""
