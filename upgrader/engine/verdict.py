"""How a run ended, from its hosts' end states (the verdict), and who a failure puts back.

The one rule for both drivers (engine/policy.py uses it), and the README's exit-code table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from upgrader.engine.host_actions import HostRun
from upgrader.errors import ExitCode
from upgrader.vocabulary import ON_TARGET, UPGRADED, HostState, RunStatus


@dataclass
class Outcome:
    exit_code: ExitCode
    status: RunStatus
    message: str
    hosts: dict[str, HostRun] = field(default_factory=dict)
    resumable: bool = False  # halted part-way: `upgrader resume RUN` carries on


# Where a host may end and still be on a verified release: the target, or where it began.
_ON_START = frozenset({HostState.PENDING, HostState.STAGED, HostState.UNTOUCHED, HostState.ROLLED_BACK})


def verdict(
    hosts: dict[str, HostRun],
    *,
    held: bool,
    failures: int,
    aborted: bool,
    halted: str | None,
    target: str,
    resumable: bool = False,
) -> tuple[ExitCode, RunStatus, str]:
    """How a run ended, from its hosts' end states: the one rule for the local engine and the Temporal
    workflow, and the README's exit-code table.

    0  every host on the target, verified.
    3  stopped by a failure or an abort: every host it changed and did not finish is back on its
       starting release, verified (policy 'host': hosts that passed stay on the target, verified).
    4  a human must act: a host is on no verified release (rollback failed, unreachable, held, its
       put-back was left to resume by a second signal, or untouched because the release it ran failed
       the precheck's checks).
    5  halted part-way, nothing to fix: every host verified, on the target or its starting release;
       resumable (`upgrader resume RUN`), or an `abort --keep` that left hosts on the target.
    """
    if held:
        return ExitCode.ROLLBACK_FAILED, RunStatus.HELD, "failure held for a human (rollback: hold)"
    bad = [
        h.name
        for h in hosts.values()
        if h.state in (HostState.ROLLBACK_FAILED, HostState.UNREACHABLE)
        or (h.state == HostState.FAILED and h.touched)
        or h.state not in (_ON_START | ON_TARGET | {HostState.FAILED, HostState.HANDED_OVER})
    ]
    # Untouched, but the release it ran already failed its checks (the precheck): on no verified release either.
    sick = [h.name for h in hosts.values() if h.state == HostState.FAILED and h.unhealthy and h.name not in bad]
    if bad or sick:
        said = [f"{', '.join(bad)} not back on a verified version"] * bool(bad) + [
            f"{', '.join(sick)} unhealthy on the release it ran before the upgrade (left untouched)"
        ] * bool(sick)
        status = RunStatus.ROLLBACK_FAILED if bad else RunStatus.UNHEALTHY
        return ExitCode.ROLLBACK_FAILED, status, "; ".join(said) + " — act now"
    on_target = [h.name for h in hosts.values() if h.state in ON_TARGET]
    if len(on_target) == len(hosts):
        return ExitCode.OK, RunStatus.SUCCEEDED, f"{len(hosts)} host(s) on {target} and verified"
    still = f"; on {target}, verified: {', '.join(on_target)}" if on_target else ""
    if failures:
        return (
            ExitCode.FAILED_ROLLED_BACK,
            RunStatus.FAILED_ROLLED_BACK,
            f"{failures} host(s) failed; every failed host is back on its starting release, verified" + still,
        )
    if aborted:
        message = halted or "aborted"
        if on_target:  # abort --keep
            return ExitCode.HALTED, RunStatus.ABORTED, message + f"; kept{still}; the rest on their starting release"
        return (
            ExitCode.FAILED_ROLLED_BACK,
            RunStatus.ABORTED,
            message + ("; every host the run changed is back on its starting release, verified"),
        )
    if halted and (resumable or on_target):
        return ExitCode.HALTED, RunStatus.HALTED, halted + (still or "; no host left on the target")
    if halted:
        return ExitCode.FAILED_ROLLED_BACK, RunStatus.HALTED, halted + "; no host left on the target"
    behind = [h.name for h in hosts.values() if h.state not in ON_TARGET]  # never started: not a success
    return ExitCode.HALTED, RunStatus.HALTED, f"not started: {', '.join(behind)}{still}"


def rollback_targets(policy: str, hosts: dict[str, HostRun], phase: list[str], failed: list[str]) -> list[str]:
    """Who a failure in ``phase`` puts back under ``policy`` (host, wave or run; hold puts back no one).

    host: the failed hosts that changed; wave: every host of the phase that changed or is on the
    target; run: every host of the run on the target, a baking canary included.  Shared by the local
    engine and the Temporal workflow, so the two cannot drift.
    """
    if policy == "hold":
        return []
    if policy == "host":
        return [h for h in failed if hosts[h].touched]
    if policy == "wave":
        return [h for h in phase if hosts[h].touched or hosts[h].state in ON_TARGET]
    return [h for h, r in hosts.items() if r.touched or r.state in UPGRADED]
