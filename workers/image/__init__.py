"""The image worker kind: open_clip embeddings and zero-shot tags on the `image` queue."""
