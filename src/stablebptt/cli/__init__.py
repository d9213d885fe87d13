"""Command line of stablebptt."""

from .main import main

__all__ = ["main"]
