"""Test doubles shared by the unit tests (not tests themselves)."""
