"""The ``idnode`` command, one module per command group (``entry`` parses and runs)."""

from node.cli.entry import main

__all__ = ["main"]
