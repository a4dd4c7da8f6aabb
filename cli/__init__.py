"""The `mmstream` command."""
