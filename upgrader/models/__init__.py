"""Plain data: playbooks, inventories, host facts and plans (validated, frozen)."""
