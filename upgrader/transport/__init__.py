"""The one seam through which upgrader talks to hosts."""

from upgrader.transport.base import Endpoint, Result, Timeouts, Transport

__all__ = ["Endpoint", "Result", "Timeouts", "Transport"]
