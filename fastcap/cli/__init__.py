"""The ``fastcap`` command: one module per command (``main`` parses and dispatches)."""
