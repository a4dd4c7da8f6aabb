"""The `/v1/realtime` websocket: a compatible subset of the OpenAI Realtime API.

router         the endpoint: accepts the socket, hands it to a connection
connection     one socket's session from start to end: puts the parts together, cleans up at close
client_socket  the socket itself: receive, send (one at a time), close; `ClientGone` once it is gone
client_events  each client event decoded, checked and dispatched by type; failures become `error`s
worker_events  the relay of what the workers report (speech, transcripts, pictures) to the client
runner         the responses: one at a time, and the automatic one a server VAD turn queues
responder      one response's events, from `response.created` to `response.done`
state          what those parts share: the session as last set, its input audio buffer
audio_input    the input audio buffer: appends checked, converted and forwarded to the workers
items          conversation items a client creates: checked, their speech taken out, announced
"""
