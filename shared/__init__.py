"""Code the gateway and the workers both import: messages, settings, Celery app, Redis helpers.

Nothing here imports a model library (torch, faster_whisper, open_clip, llama_cpp).
"""
