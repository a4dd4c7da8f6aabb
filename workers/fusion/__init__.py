"""Fusion: projectors that turn encoder embeddings into soft tokens for the language model."""
