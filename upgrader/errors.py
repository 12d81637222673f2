"""One error hierarchy for everything upgrader reports to a person.

Every error carries what happened, where (file:line, host, step) and a hint
for what to do next; the CLI turns them into exit codes in one place
(``upgrader.cli.main``).  Anything that is *not* an ``UpgraderError`` is a
bug: the CLI prints a short line and writes the traceback to the debug log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Documented in the README; scripts and schedulers depend on them."""

    OK = 0
    REFUSED = 1  # bad input, or refused before changing anything
    USAGE = 2
    FAILED_ROLLED_BACK = 3  # failed or aborted: every host it changed and did not finish is back, verified
    ROLLBACK_FAILED = 4  # a human must act: some host is not on a verified version
    HALTED = 5  # stopped part-way, nothing to fix: every host verified (target or start); resumable or kept
    BUG = 70  # an unexpected exception (EX_SOFTWARE)


# What `apply` and `resume` return, derived from the hosts' end states (engine/apply.py: verdict); the
# README's exit-code table says the same.
RUN_EXIT_CODES = (
    "0 every host on the target, verified (or nothing to do); 1 refused before changing anything; 2 usage; "
    "3 failed or aborted: every host it changed and did not finish is back on its starting release, verified; "
    "4 a human must act: some host is on no verified release (named; one the run changed keeps the run's lock, "
    "and `upgrader resume RUN` puts it back; one it left alone because the release it ran failed its checks "
    "before the upgrade is unlocked, status `unhealthy`); "
    "5 halted part-way (Ctrl-C, a closed window, abort --keep): every host verified, on the target or its "
    "starting release — `upgrader resume RUN` carries on a resumable run"
)


# What `plan` returns (problems are refused alike with live facts or offline).
PLAN_EXIT_CODES = (
    "0 planned, no problems; 1 the plan has problems (each listed in it, with live facts or "
    "offline alike), bad input, or an output path that cannot be written; 2 usage"
)


def with_exit_codes(epilog: str | None, codes: str) -> str:
    """The command's help epilog with its own exit codes (the shared epilog's example kept)."""
    import textwrap

    example = (epilog or "").split("exit codes:")[0].rstrip()
    return (example + "\n\n" if example else "") + textwrap.fill(
        f"exit codes: {codes}", width=100, subsequent_indent="  "
    )


@dataclass(frozen=True)
class Location:
    """A place in an input file; line and column are 1-based."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


@dataclass(frozen=True)
class Problem:
    """One finding about an input: rendered ``file:line:col: message — hint``."""

    location: Location
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}"
        return f"{text} — {self.hint}" if self.hint else text


# A reference is what an operator searches for: printed as error[KIND], listed in the README (Error kinds).
REFERENCE = re.compile(r"[a-z]+(-[a-z]+)*")


class UpgraderError(Exception):
    """Base class: a message, a hint and a stable reference (kebab-case) for the README."""

    exit_code: ExitCode = ExitCode.REFUSED
    reference: str = "error"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not REFERENCE.fullmatch(cls.reference):  # checked once, when the class is defined (as pip does)
            raise TypeError(f"{cls.__name__}.reference {cls.reference!r} is not kebab-case")

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class InputError(UpgraderError):
    """One or more problems in playbooks, inventories, facts or plan files."""

    reference = "bad-input"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        first = str(self.problems[0]) if self.problems else "invalid input"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(first + more)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class RefusedError(UpgraderError):
    """A precondition does not hold (stale plan, lock held, window closed); nothing was changed."""

    reference = "refused"


class NotConfirmed(RefusedError):
    """The operator answered no (or could not be asked): their own decision, not a failure to report."""

    reference = "not-confirmed"


class TransportError(UpgraderError):
    """A host could not be reached or did not answer in time."""

    reference = "transport"

    def __init__(self, host: str, message: str, hint: str = "") -> None:
        super().__init__(f"{host}: {message}", hint)
        self.host = host


class HostKeyError(TransportError):
    """The host's SSH key is unknown or changed: strict checking refuses it."""

    reference = "host-key"
