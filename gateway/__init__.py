"""The gateway: speaks the client protocols, keeps state in Redis, reaches workers through Celery.

It never imports torch, faster_whisper, open_clip or llama_cpp.
"""
