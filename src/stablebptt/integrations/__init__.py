"""Adapters that turn other libraries' simulators into stablebptt tasks (each imports its library on first use):
`brax` (``brax:NAME`` on the command line)."""
