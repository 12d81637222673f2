"""Failure budgets: how many hosts may fail in a run, and in each datacenter, before no new host starts.

A budget is a count or a percentage of the plan's hosts (of the run, or of one datacenter), resolved
here from the plan alone, so the text plan, the Markdown plan and the engine read the same numbers.
Failures are counted for the whole run, across waves: a budget is never reset per batch (Ansible's
``max_fail_percentage`` is checked per batch, so 10% of each batch of 10 can fail wave after wave).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from upgrader.models.plan import Plan


def allowed(limit: int | str, population: int) -> int:
    """Failures a budget allows: a count as it is; ``p%`` of ``population`` rounded up, at least 1."""
    if isinstance(limit, int):
        return limit
    return max(1, math.ceil(population * int(limit.rstrip("%")) / 100))


@dataclass(frozen=True)
class Budgets:
    run: int
    per_datacenter: dict[str, int]  # empty: no budget per datacenter

    def spent(self, failures: int, by_datacenter: Mapping[str, int]) -> str | None:
        """Why no new host may start (a budget is spent), or None."""
        if failures >= self.run:
            return f"failure budget spent: {failures} of {self.run} allowed host failure(s) in the run"
        for dc, limit in self.per_datacenter.items():
            if by_datacenter.get(dc, 0) >= limit:
                return (
                    f"failure budget of {dc} spent: {by_datacenter[dc]} of {limit} allowed host failure(s) "
                    "in that datacenter"
                )
        return None

    def describe(self) -> str:
        text = f"halt after {self.run} failure(s) in the run"
        if self.per_datacenter:
            text += " or " + ", ".join(f"{n} in {dc}" for dc, n in self.per_datacenter.items())
        return text + " (counted across waves)"


def of_plan(plan: Plan) -> Budgets:
    rollout = plan.spec.rollout
    per_dc: dict[str, int] = {}
    if rollout.max_failures_per_datacenter is not None:
        sizes = Counter(h.datacenter for h in plan.hosts)
        per_dc = {dc: allowed(rollout.max_failures_per_datacenter, n) for dc, n in sizes.items()}
    return Budgets(run=allowed(rollout.max_failures, len(plan.hosts)), per_datacenter=per_dc)
