"""The decoder worker kind: llama.cpp generation on the `decode` queue."""
