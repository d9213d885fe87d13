"""Command line of stablebptt: `main` (the entry point, `stablebptt.cli.main`) and the commands
(`stablebptt.cli.commands`)."""

from .main import main

__all__ = ["main"]
