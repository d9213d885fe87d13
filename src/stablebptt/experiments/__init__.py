"""Experiments built on training: method comparisons and figures."""
