"""The `/v1/realtime` websocket: a compatible subset of the OpenAI Realtime API."""
