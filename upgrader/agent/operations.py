"""The operations a program may name, by name."""

from __future__ import annotations

from .ops_install import (
    op_bake,
    op_carry_over,
    op_migrate,
    op_prune,
    op_stage,
    op_start,
    op_stop,
    op_switch,
    op_unstage,
    op_verify,
)
from .ops_look import op_facts, op_lock, op_precheck
from .ops_rollback import op_rollback

OPS = {
    "facts": op_facts,
    "lock": op_lock,
    "stage": op_stage,
    "precheck": op_precheck,
    "stop": op_stop,
    "switch": op_switch,
    "carry_over": op_carry_over,
    "migrate": op_migrate,
    "start": op_start,
    "verify": op_verify,
    "bake": op_bake,
    "rollback": op_rollback,
    "prune": op_prune,
    "unstage": op_unstage,
}
