"""The training protocols by name (the spelling a run's configuration records): `epoch.Dataset` (the paper's),
`stream.Stream` (Brax's APG's) and `shac.Shac` (a learned critic at the end of short windows). A protocol of
one's own subclasses `epoch.Protocol`."""

from __future__ import annotations

from ..core.checks import BadInput
from .epoch import Dataset, Protocol
from .shac import Shac
from .stream import Stream

PROTOCOL_OBJECTS: dict[str, Protocol] = {p.name: p for p in (Dataset(), Stream(), Shac())}


def as_protocol(protocol: str | Protocol) -> Protocol:
    """The `Protocol` of a name ("dataset", "stream") or `protocol` itself.

    Raises:
        BadInput: for anything else.
    """
    if isinstance(protocol, Protocol):
        return protocol
    if isinstance(protocol, str) and protocol in PROTOCOL_OBJECTS:
        return PROTOCOL_OBJECTS[protocol]
    raise BadInput(f"unknown protocol {protocol!r}; allowed: {', '.join(PROTOCOL_OBJECTS)}")
