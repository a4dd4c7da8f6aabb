"""Celery worker kinds. Each loads its model once per process, lazily, and never at import."""
