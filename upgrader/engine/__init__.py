"""Executing plans on hosts: pool and agent sessions, facts, stage, canary, waves, rollback, locks."""
