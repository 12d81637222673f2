"""Is a saved plan still what was reviewed, and still true?  Precise reasons to refuse it (pure).

A content hash shows accidental change only: anyone who edits a plan can recompute it.  So a saved
plan is planned again from the playbook and inventory it names and the facts it assumed, and must
come out byte-identical (``first_difference``); then the hosts' live facts must still be those facts
(``drift``).
"""

from __future__ import annotations

import json
from typing import Any

from upgrader.models.facts import Facts
from upgrader.models.plan import Plan, canonical_json

_ABSENT = object()
_SHOWN = 120  # characters of a differing value shown in a refusal


def first_difference(saved: Any, derived: Any) -> str | None:
    """``None`` if the two plans' JSON data are equal, else the first difference, by JSON path.

    Keys are visited in sorted order (the canonical form's), ``content_hash`` last: an edited and
    re-sealed plan differs in its hash too, and the edit itself is what the refusal should name.
    """
    if not isinstance(saved, dict) or not isinstance(derived, dict):
        return _difference("", saved, derived)
    head = {k: v for k, v in saved.items() if k != "content_hash"}
    found = _difference("", head, {k: v for k, v in derived.items() if k != "content_hash"})
    if found is None:
        found = _difference("content_hash", saved.get("content_hash", _ABSENT), derived.get("content_hash", _ABSENT))
    return found


def _difference(path: str, saved: Any, derived: Any) -> str | None:
    if type(saved) is dict and type(derived) is dict:
        for key in sorted(saved.keys() | derived.keys()):
            found = _difference(f"{path}.{key}" if path else key, saved.get(key, _ABSENT), derived.get(key, _ABSENT))
            if found:
                return found
        return None
    if type(saved) is list and type(derived) is list:
        for i in range(max(len(saved), len(derived))):
            found = _difference(
                f"{path}[{i}]", saved[i] if i < len(saved) else _ABSENT, derived[i] if i < len(derived) else _ABSENT
            )
            if found:
                return found
        return None
    if type(saved) is type(derived) and saved == derived:
        return None
    return f"{path or '(the whole plan)'}: plan says {_shown(saved)}, playbook gives {_shown(derived)}"


def _shown(value: Any) -> str:
    if value is _ABSENT:
        return "nothing"
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def rederived_difference(saved_text: str, derived: Plan) -> str | None:
    """Compare a saved plan file with the plan its inputs give now: None when byte-identical.

    Both sides are compared in canonical form (sorted keys, compact), so the file's indentation
    does not matter, and everything else does, the content hash included.
    """
    mine = derived.to_json()
    if mine == saved_text:  # as `plan --out` wrote it: no need to parse tens of megabytes
        return None
    saved = json.loads(saved_text)
    if canonical_json(saved) == canonical_json(json.loads(mine)):
        return None
    return first_difference(saved, json.loads(mine)) or "the plan differs from what its inputs give"


def drift(plan: Plan, facts: Facts, *, playbook_sha: str | None, inventory_sha: str) -> list[str]:
    """Everything that differs from what the plan assumed; empty means the plan still holds."""
    reasons = []
    if inventory_sha != plan.inventory.sha256:
        reasons.append(f"inventory {plan.inventory.path} changed since the plan was made")
    if playbook_sha is not None and playbook_sha != plan.playbook.sha256:
        reasons.append(f"playbook {plan.playbook.path} changed since the plan was made")
    for host, assumed in plan.facts_assumed.items():
        hf = facts.hosts.get(host)
        if hf is None or not hf.reachable:
            reasons.append(f"{host}: unreachable ({hf.error if hf else 'no facts'})")
            continue
        now = hf.components.get(plan.component)
        installed = now.installed if now else None
        if installed != assumed.installed:
            reasons.append(f"{host}: now on {installed or 'nothing'}, not {assumed.installed} as planned")
        staged_now = set(now.staged if now else [])
        staged_then = set(assumed.staged)
        if staged_now - staged_then:
            reasons.append(f"{host}: gained staged release(s) {', '.join(sorted(staged_now - staged_then))}")
        if staged_then - staged_now:
            reasons.append(f"{host}: lost staged release(s) {', '.join(sorted(staged_then - staged_now))}")
        for comp, then in sorted(assumed.requires.items()):
            other = hf.components.get(comp)
            if (other.installed if other else None) != then:
                reasons.append(
                    f"{host}: {comp} now on {(other.installed if other else None) or 'nothing'}, "
                    f"not {then or 'nothing'} as planned"
                )
    return reasons
