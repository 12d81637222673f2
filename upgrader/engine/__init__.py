"""Executing plans on hosts: facts, stage, canary, waves, rollback, journal and locks."""
