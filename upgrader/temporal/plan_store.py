"""The plan by reference: stored content-addressed, compact and gzipped, in the artifact store.

A Temporal run's plan does not travel in its workflow's input (issue 27 §1: a 300-host plan inline
was refused by the server).  The controller stores the verified plan's compact text (sorted keys, no
indentation: what its hash and signature cover) gzipped with mtime 0 at
``<artifact store>/plans/<sha256 of the text>.json.gz`` and starts the run with a ``PlanRef``
(the text's sha256 and size, the file's sha256 and size, its parts).  The datacenter workers read the
file from their own artifact store (the release tarballs' directory: the path the client gave, or
`worker --artifacts`: a copy of the controller's file, byte for byte); the workflows get it in parts
from the control worker (temporal/plan_ref.py).  Every reader checks the file's sha256, then inflates
it, bounded by the text's size (a gzip "bomb" is stopped one byte past it, never inflated whole), and
checks the text's sha256: a file is only ever a cache, and a tampered, truncated or swapped one is
refused.  The signature over the plan is the workers' next check (activities.HostWork.plan).

Written atomically (a temporary file in the same directory, fsynced, renamed), private (0600 files in
a 0700 ``plans/``), never through a symlink; a file already there is verified, not trusted.
No Temporal imports: the controller and every worker use this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import stat
import zlib
from pathlib import Path

from upgrader.errors import RefusedError
from upgrader.loading import bounded_read
from upgrader.models.plan import Plan
from upgrader.models.plan_json import plan_json
from upgrader.temporal import limits
from upgrader.temporal.messages import PlanRef

PLANS = "plans"
SUFFIX = ".json.gz"
MAX_SIZE = bounded_read.MAX_BYTES["plan"]  # the compact text: as any plan file read
PART = limits.PAYLOAD_BUDGET // 2  # one plan_part's bytes: half the payload budget (room for the envelope)
SHA256 = re.compile(r"[0-9a-f]{64}")
CHUNK = 1024 * 1024  # inflated at most this much at a time


class PlanStoreError(RefusedError):
    """A stored plan missing, unreadable or not the plan its reference names: refused, nothing run."""

    reference = "plan-store"


def text_of(plan: Plan) -> str:
    """The plan's compact text, as stored: canonical JSON with its content hash (``Plan.from_json`` reads it)."""
    return plan_json(plan, content_hash=plan.content_hash or plan.compute_hash())


def path_of(store: Path, ref: PlanRef) -> Path:
    check_ref(ref)
    return store / PLANS / f"{ref.sha256}{SUFFIX}"


def check_ref(ref: PlanRef) -> None:
    """Refuse a reference that could not name a stored plan: it comes from a workflow, which anyone in the
    namespace can start (a sha256 that is not 64 hex digits would be a path; sizes bound what is read)."""
    ok = (
        all(isinstance(h, str) and SHA256.fullmatch(h) is not None for h in (ref.sha256, ref.gz_sha256))
        and all(isinstance(n, int) and not isinstance(n, bool) for n in (ref.size, ref.gz_size, ref.parts))
        and 0 < ref.size <= MAX_SIZE
        and 0 < ref.gz_size <= max_gz(ref.size)
        and 0 < ref.parts <= ref.gz_size
        and -(-ref.gz_size // ref.parts) <= PART
    )
    if not ok:
        raise PlanStoreError(
            f"not a plan reference: {ref!r}", "a run's plan is named by `apply --engine temporal`; nothing was run"
        )


def parts_of(gz_size: int) -> int:
    return max(1, -(-gz_size // PART))


def part_range(ref: PlanRef, index: int) -> tuple[int, int]:
    """Byte range [start, end) of the gzip file that part ``index`` carries (each at most PART bytes)."""
    step = -(-ref.gz_size // ref.parts)
    return index * step, min(ref.gz_size, (index + 1) * step)


def max_gz(size: int) -> int:
    """The most a gzip file of ``size`` bytes of text can take: deflate's stored blocks (5 bytes each per
    16 KiB at worst) and gzip's header and trailer, with room; anything larger is not such a file."""
    return size + size // 1000 + 1024


# ---------------------------------------------------------------- store (the controller)
def store(store_dir: Path, plan_text: str) -> PlanRef:
    """Store ``plan_text`` (compact) under ``store_dir``/plans; its reference.  Refused (one line, with the
    fix) when the store is missing, or ``plans/`` is a symlink, not ours or writable by others."""
    data = plan_text.encode("utf-8")
    if len(data) > MAX_SIZE:
        raise PlanStoreError(
            f"the plan is {len(data)} bytes, over the {MAX_SIZE} a plan may take", "plan fewer hosts (--limit)"
        )
    sha = hashlib.sha256(data).hexdigest()
    plans = store_dir / PLANS
    if not store_dir.is_dir():
        raise PlanStoreError(
            f"no artifact store at {store_dir} to keep the run's plan in",
            "give --artifacts DIR (or $UPGRADER_ARTIFACTS): the directory the datacenter workers read releases from",
        )
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(plans, 0o700)
    except OSError as exc:
        raise _unwritable(plans, exc) from None
    _check_dir(plans, mine=True)
    target = plans / f"{sha}{SUFFIX}"
    try:  # already stored (an earlier run of the same plan, another controller): kept only if it is the plan
        held = _load(target, max_gz(len(data)))
        ref = reference(sha, len(data), held)
        inflate(held, ref, str(target))
        return ref
    except PlanStoreError:
        if _is_link_or_odd(target):  # planted: say so, never write through or over it
            raise
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing, mtime 0, no name: deterministic
    gz = compressor.compress(data) + compressor.flush()
    try:
        _write(plans, target, gz)
    except OSError as exc:
        raise _unwritable(plans, exc) from None
    return reference(sha, len(data), gz)


def _unwritable(plans: Path, exc: OSError) -> PlanStoreError:
    return PlanStoreError(
        f"cannot store the run's plan in {plans}: {exc.strerror or exc}",
        "run `apply` as a user who can write the artifact store (or give --artifacts DIR); nothing was started",
    )


def reference(sha: str, size: int, gz: bytes) -> PlanRef:
    return PlanRef(sha, size, len(gz), parts_of(len(gz)), hashlib.sha256(gz).hexdigest())


def _write(plans: Path, target: Path, gz: bytes) -> None:
    tmp = plans / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(gz)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)  # a rename replaces a name, never writes through a link planted there
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(plans, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)  # the rename itself survives a crash
    finally:
        os.close(dfd)


def _is_link_or_odd(path: Path) -> bool:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    return not stat.S_ISREG(mode)


def _check_dir(plans: Path, *, mine: bool) -> None:
    """``plans/`` must be a real directory that nobody else can write to (and, to store in it, ours)."""
    try:
        info = os.lstat(plans)
    except FileNotFoundError:
        raise PlanStoreError(
            f"no plans directory {plans}: the run's plan is not in this artifact store", COPY
        ) from None
    owners = {os.geteuid()} if mine else {os.geteuid(), 0}
    why = (
        "is a symlink"
        if stat.S_ISLNK(info.st_mode)
        else "is not a directory"
        if not stat.S_ISDIR(info.st_mode)
        else f"is owned by uid {info.st_uid}, not this user"
        if info.st_uid not in owners
        else f"is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})"
        if info.st_mode & 0o022
        else None
    )
    if why:
        raise PlanStoreError(
            f"the plan store {plans} {why}: refused",
            f"make it a directory of this user's, mode 0700 (`rm -r {plans}` and `apply` stores the plan again)",
        )


COPY = (
    "copy the controller's <artifact store>/plans/ here byte for byte (as the release tarballs), or give "
    "`worker --artifacts DIR` where they are"
)
AGAIN = "remove it: `apply` stores the plan again (a worker's store: copy the controller's file)"


# ---------------------------------------------------------------- read (the workers)
def read(store_dir: Path, ref: PlanRef) -> str:
    """The plan text ``ref`` names, from ``store_dir``: the file's and the text's sha256 verified, or
    PlanStoreError (one line: the path and the fix)."""
    return inflate(read_gz(store_dir, ref), ref, str(path_of(store_dir, ref)))


def read_gz(store_dir: Path, ref: PlanRef) -> bytes:
    """The stored gzip file's bytes, once they are the file ``ref`` names and inflate to its plan."""
    path = path_of(store_dir, ref)
    _check_dir(path.parent, mine=False)
    gz = _load(path, ref.gz_size)
    inflate(gz, ref, str(path))
    return gz


def _load(path: Path, cap: int) -> bytes:
    """The file's bytes: a regular file (no symlink, FIFO or device) of at most ``cap`` bytes."""
    try:  # O_NOFOLLOW: a symlink at the name is refused (ELOOP); O_NONBLOCK: a FIFO never blocks
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PlanStoreError(f"the run's plan is not stored here: no {path}", COPY) from None
    except OSError as exc:
        link = " (a symlink: refused)" if os.path.islink(path) else ""
        raise PlanStoreError(f"cannot open the run's plan {path}: {exc.strerror or exc}{link}", AGAIN) from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise PlanStoreError(f"{path} is not a regular file: refused", AGAIN)
        if info.st_size > cap:
            raise PlanStoreError(
                f"{path} is {info.st_size} bytes, more than the plan's file can be ({cap}): refused", AGAIN
            )
        return fh.read(cap + 1)


def inflate(gz: bytes, ref: PlanRef, where: str = "the stored plan") -> str:
    """The plan text, if ``gz`` is the file ``ref`` names (size and sha256) and inflates to exactly
    ``ref.size`` bytes hashing to ``ref.sha256``.

    Bounded: never more than ``ref.size + 1`` bytes are inflated (a bomb is stopped there).  Pure and
    deterministic: the workflow verifies the parts it was given with it too."""
    if len(gz) != ref.gz_size or hashlib.sha256(gz).hexdigest() != ref.gz_sha256:
        raise PlanStoreError(f"{where} is not the file its reference names (changed, or another copy): refused", AGAIN)
    inflater = zlib.decompressobj(wbits=31)  # gzip framing, one member: its CRC and length checked at the end
    out: list[bytes] = []
    got = 0
    try:
        pending = gz
        while not inflater.eof:
            chunk = inflater.decompress(pending, min(CHUNK, ref.size + 1 - got))
            got += len(chunk)
            out.append(chunk)
            if got > ref.size:
                raise PlanStoreError(f"{where} inflates past the plan's {ref.size} bytes: refused", AGAIN)
            pending = inflater.unconsumed_tail
            if not chunk and not pending:
                break  # all input read, no output held back: the member ends early
    except zlib.error as exc:
        raise PlanStoreError(f"{where} is not a gzip file of the plan ({exc}): refused", AGAIN) from None
    if not inflater.eof or inflater.unused_data:
        raise PlanStoreError(f"{where} is truncated or has bytes past its end: refused", AGAIN)
    data = b"".join(out)
    if len(data) != ref.size or hashlib.sha256(data).hexdigest() != ref.sha256:
        raise PlanStoreError(f"{where} is not the plan sha256 {ref.sha256[:12]}… names: refused", AGAIN)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:  # a sha256 of the controller's own text cannot get here
        raise PlanStoreError(f"{where} is not UTF-8: refused", AGAIN) from None
