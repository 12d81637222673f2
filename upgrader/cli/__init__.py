"""Command-line entry point; the commands themselves live in ``upgrader.commands``."""
