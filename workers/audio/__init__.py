"""The audio worker kind: faster-whisper transcription and Silero VAD on the `audio` queue."""
