"""upgrader: declarative, canaried, reversible upgrades of vendor applications on trading hosts."""

__version__ = "0.1.0"
