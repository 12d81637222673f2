"""The one seam through which upgrader talks to hosts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from upgrader.transport.base import Endpoint, Result, Timeouts, Transport

if TYPE_CHECKING:
    from upgrader.transport.gateways import Gateways

__all__ = ["Endpoint", "Result", "Timeouts", "Transport", "fabric_transport"]


def fabric_transport(endpoint: Endpoint, timeouts: Timeouts, gateways: Gateways) -> Transport:
    """The one place SSH transports are made: the pool's, and the early start's before a pool exists.

    Here, not in upgrader.engine.pool, because the early start runs before the models are
    imported: importing them (pydantic, ~25 ms) first would delay every handshake by as much.
    """
    from upgrader.transport.fabric_adapter import FabricTransport  # imported lazily: planning stays light

    return FabricTransport(endpoint, timeouts, gateways)
