"""Speaking replies: text cut into pieces as it streams, each spoken by a speech worker, audio in order."""
