"""Optional plan signatures: HMAC-SHA256 over the plan's canonical JSON, for pipelines that move plans between machines.

`apply plan.json` already plans again from the playbook and inventory and refuses any difference;
a signature adds who may hand it a plan: with a key configured (``--plan-key FILE`` or the
``UPGRADER_PLAN_KEY`` environment variable), `plan --out plan.json` writes ``plan.json.sig`` and
`apply plan.json` refuses a plan whose signature is missing or does not match, before anything
else.  The signature covers the canonical form (sorted keys, compact), so re-indenting a plan keeps
it valid and any other change does not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from upgrader.errors import RefusedError
from upgrader.models.plan import canonical_json

ENV = "UPGRADER_PLAN_KEY"
PREFIX = "hmac-sha256:"
MIN_KEY_BYTES = 16


def key(path: Path | None) -> bytes | None:
    """The signing key: the file's contents, else the environment variable's; None when neither is set."""
    if path is not None:
        try:
            data = path.read_bytes().strip()
        except OSError as exc:
            raise RefusedError(
                f"cannot read plan key {path}: {exc.strerror or exc}",
                "--plan-key names a file holding the shared secret",
            ) from None
        where = str(path)
    elif os.environ.get(ENV):
        data, where = os.environ[ENV].strip().encode(), f"${ENV}"
    else:
        return None
    if len(data) < MIN_KEY_BYTES:
        raise RefusedError(
            f"the plan key in {where} is {len(data)} bytes; at least {MIN_KEY_BYTES} are needed",
            "use a random secret, e.g. `openssl rand -hex 32`",
        )
    return data


def signature_path(plan: Path) -> Path:
    return plan.with_name(plan.name + ".sig")


def sign(plan_text: str, secret: bytes) -> str:
    canonical = canonical_json(json.loads(plan_text)).encode()
    return PREFIX + hmac.new(secret, canonical, hashlib.sha256).hexdigest()


def check(plan: Path, plan_text: str, secret: bytes) -> None:
    """Refuse unless ``plan``'s signature file holds the signature of ``plan_text`` under ``secret``."""
    sig = signature_path(plan)
    try:
        recorded = sig.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        raise RefusedError(
            f"{plan}: no readable signature {sig}, and a plan key is configured",
            "sign plans with `upgrader plan --out PLAN.json` and the same key",
        ) from None
    if not hmac.compare_digest(recorded.encode(), sign(plan_text, secret).encode()):
        raise RefusedError(
            f"{plan}: the signature in {sig} does not match the plan (edited, or another key)",
            "plan again and sign it with the pipeline's key",
        )


def sign_run(plan_text: str, run_id: str, python: str, break_lock: str | None, secret: bytes) -> str:
    """The signature a Temporal run carries (issue 25 §7): over the plan and the run's parameters that
    reach hosts beside it (the interpreter the agent runs under, a lock it may break), bound to the run id.

    A datacenter worker runs a plan only with this signature under its own key: whoever can start a
    workflow in the namespace cannot make one, so cannot make a worker run operations of their choosing.
    """
    envelope = {"plan": json.loads(plan_text), "run": run_id, "python": python, "break_lock": break_lock}
    return PREFIX + hmac.new(secret, canonical_json(envelope).encode(), hashlib.sha256).hexdigest()


def run_signed(signature: str, plan_text: str, run_id: str, python: str, break_lock: str | None, secret: bytes) -> bool:
    """Does ``signature`` vouch for this plan and these run parameters under ``secret``?"""
    expected = sign_run(plan_text, run_id, python, break_lock, secret)
    return hmac.compare_digest(signature.encode("utf-8", "replace"), expected.encode())
