"""The plan by reference, on disk (temporal/plan_store.py): stored content-addressed, read back only as the
plan its reference names.  A stored plan is outside input to whoever reads it: any byte changed, a symlink,
a special file, a decompression bomb or a missing file is refused in one line naming the path and the fix."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import os
import stat
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from tests.unit.test_plan_ops import case_plan
from upgrader.temporal import plan_store
from upgrader.temporal.messages import PlanRef
from upgrader.temporal.plan_store import PlanStoreError

Record = Callable[[str, object], None]
PLAN = plan_store.text_of(case_plan("multi_hop"))
G = "1" * 64
SLOW = examples(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def fresh(tmp_path: Path, name: str = "artifacts") -> Path:
    store = tmp_path / name
    store.mkdir(exist_ok=True)
    return store


def one_line(exc: PlanStoreError) -> str:
    text = str(exc)
    assert "\n" not in text and exc.hint, text
    return text


# ---------------------------------------------------------------- what is stored


@SLOW
@given(text=st.text(min_size=1, max_size=3000))
def test_any_text_is_read_back_exactly_and_stored_deterministically(tmp_path: Path, text: str) -> None:
    a, b = fresh(tmp_path, "a"), fresh(tmp_path, "b")
    ref = plan_store.store(a, text)
    data = text.encode()
    assert (ref.sha256, ref.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert plan_store.read(a, ref) == text
    assert plan_store.store(b, text) == ref  # the same bytes from another store: content-addressed, mtime 0
    assert plan_store.path_of(a, ref).read_bytes() == plan_store.path_of(b, ref).read_bytes()
    assert plan_store.store(a, text) == ref  # stored again: verified and kept


def test_the_stored_file_is_private_compact_and_gzipped_with_mtime_zero(tmp_path: Path) -> None:
    store = fresh(tmp_path)
    ref = plan_store.store(store, PLAN)
    path = plan_store.path_of(store, ref)
    assert path == store / "plans" / f"{ref.sha256}.json.gz"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700 and stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # gzip, mtime 0
    assert gzip.decompress(raw).decode() == PLAN and "\n" not in PLAN and ref.gz_size == len(raw)
    assert ref.gz_sha256 == hashlib.sha256(raw).hexdigest() and raw[3] == 0  # no name, no flags
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


@given(gz_size=st.integers(1, 64 * 1024 * 1024))
def test_the_parts_cover_the_file_exactly_each_under_half_the_payload_budget(gz_size: int) -> None:
    ref = PlanRef("0" * 64, gz_size, gz_size, plan_store.parts_of(gz_size), "1" * 64)
    ranges = [plan_store.part_range(ref, i) for i in range(ref.parts)]
    assert ranges[0][0] == 0 and ranges[-1][1] == gz_size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert all(0 < end - start <= plan_store.PART for start, end in ranges)


def test_a_write_that_fails_leaves_nothing_at_the_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = fresh(tmp_path)

    def crash(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(PlanStoreError, match="No space left on device") as refused:
        plan_store.store(store, PLAN)
    assert str(store / "plans") in one_line(refused.value)
    assert list((store / "plans").iterdir()) == []


def test_a_store_this_user_cannot_write_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(path: object, mode: int = 0o777) -> None:
        raise PermissionError(13, "Permission denied")

    store = fresh(tmp_path)
    monkeypatch.setattr(os, "mkdir", denied)  # as for a user who may not write there (root may: no chmod here)
    with pytest.raises(PlanStoreError, match="Permission denied") as refused:
        plan_store.store(store, PLAN)
    assert "--artifacts" in one_line(refused.value)


# ---------------------------------------------------------------- tampering, refused


@pytest.mark.reliability(
    "a stored plan with any one byte of its gzip file changed (hypothesis: offsets and xor values)",
    "refused by the reader (the datacenter worker's read, the workflow's inflate): nothing is parsed or run",
)
def test_any_byte_flipped_in_the_stored_file_is_refused(tmp_path: Path, record_property: Record) -> None:
    seen: list[int] = []

    @SLOW
    @given(data=st.data())
    def flipped(data: st.DataObject) -> None:
        store = fresh(tmp_path, f"store-{len(seen)}")
        ref = plan_store.store(store, PLAN)
        path = plan_store.path_of(store, ref)
        raw = bytearray(path.read_bytes())
        offset = data.draw(st.integers(0, len(raw) - 1), label="offset")
        raw[offset] ^= data.draw(st.integers(1, 255), label="xor")
        path.write_bytes(bytes(raw))
        with pytest.raises(PlanStoreError) as refused:
            plan_store.read(store, ref)
        with pytest.raises(PlanStoreError):
            plan_store.inflate(bytes(raw), ref)  # what the workflow runs on the parts it was given
        assert str(path) in one_line(refused.value)
        seen.append(offset)

    flipped()
    store = fresh(tmp_path)
    ref = plan_store.store(store, PLAN)
    good = plan_store.path_of(store, ref).read_bytes()
    edges = [*range(10), *range(len(good) - 8, len(good))]  # gzip's header (flags, mtime, OS) and trailer (CRC)
    for offset in edges:  # each bit of these: the bits gzip itself ignores (FTEXT, mtime, OS) included
        for bit in range(8):
            raw = bytearray(good)
            raw[offset] ^= 1 << bit
            with pytest.raises(PlanStoreError):
                plan_store.inflate(bytes(raw), ref)
    record_property(
        "observed",
        f"{len(seen)} files of {len(good)} bytes with one random byte changed (offsets {min(seen)}..{max(seen)}), "
        f"and each of the 8 bits of the gzip header's 10 bytes and trailer's 8 flipped: every one refused",
    )


@pytest.mark.reliability(
    "a stored plan whose text has any one byte changed, gzipped again properly under the original name, and "
    "named by a reference that vouches for the new file (as a forged workflow's would)",
    "refused: the text's sha256 is not the one the file is named by",
)
def test_any_byte_changed_in_the_text_is_refused(tmp_path: Path, record_property: Record) -> None:
    seen: list[int] = []
    messages: set[str] = set()

    @SLOW
    @given(data=st.data())
    def changed(data: st.DataObject) -> None:
        store = fresh(tmp_path, f"store-{len(seen)}")
        ref = plan_store.store(store, PLAN)
        text = bytearray(PLAN.encode())
        offset = data.draw(st.integers(0, len(text) - 1), label="offset")
        text[offset] ^= data.draw(st.integers(1, 255), label="xor")
        gz = gzip.compress(bytes(text), mtime=0)
        plan_store.path_of(store, ref).write_bytes(gz)
        with pytest.raises(PlanStoreError):
            plan_store.read(store, ref)  # the controller's reference: the file is not its file (size or sha256)
        forged = plan_store.reference(ref.sha256, ref.size, gz)  # the file's own sha256, the plan's name kept
        with pytest.raises(PlanStoreError, match="not the plan sha256") as refused:
            plan_store.read(store, forged)
        seen.append(offset)
        messages.add(refused.value.message.rpartition(" is ")[2])

    changed()
    record_property(
        "observed",
        f"{len(seen)} texts of {len(PLAN)} bytes, one byte changed in each (offsets {min(seen)}..{max(seen)}): "
        f"every one refused, by the file's sha256 and, with a reference naming the new file, by the text's "
        f"({sorted(messages)})",
    )


@pytest.mark.reliability(
    "a plan file replaced by a gzip that inflates to ~200 MB while its reference names a 1 MB plan (a "
    "decompression bomb within the file-size cap)",
    "refused one byte past the reference's size, without inflating the rest (memory and time measured)",
)
def test_a_bomb_is_refused_without_inflating_it(tmp_path: Path, record_property: Record) -> None:
    store = fresh(tmp_path)
    size = 1_000_000
    bomb = gzip.compress(b"0" * 200_000_000, compresslevel=9, mtime=0)
    ref = plan_store.reference("ab" * 32, size, bomb)  # naming the bomb's own bytes: only the inflate stops it
    assert len(bomb) <= plan_store.max_gz(size)  # past the file-size check: only the bounded inflate stops it
    (store / "plans").mkdir(mode=0o700)
    plan_store.path_of(store, ref).write_bytes(bomb)
    tracemalloc.start()
    began = time.perf_counter()
    try:
        with pytest.raises(PlanStoreError, match="inflates past the plan's 1000000 bytes") as refused:
            plan_store.read(store, ref)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - began
    record_property(
        "observed",
        f"{len(bomb)}-byte gzip of 200,000,000 bytes, reference size {size}: refused in {seconds:.3f} s, "
        f"peak traced memory {peak / 1e6:.1f} MB: {one_line(refused.value)[:90]!r}",
    )
    assert peak < 8_000_000  # a few times the reference's size, not the 200 MB it inflates to


@pytest.mark.reliability(
    "a stored plan file larger than the file its reference names",
    "refused from its size, before it is read whole or inflated",
)
def test_a_file_too_large_for_its_reference_is_refused_unread(tmp_path: Path, record_property: Record) -> None:
    store = fresh(tmp_path)
    ref = plan_store.store(store, PLAN)
    path = plan_store.path_of(store, ref)
    path.write_bytes(path.read_bytes() + b"\0" * plan_store.max_gz(ref.size))
    with pytest.raises(PlanStoreError, match="more than the") as refused:
        plan_store.read(store, ref)
    record_property("observed", one_line(refused.value)[:160])


@pytest.mark.reliability(
    "a symlink planted as the plans/ directory or as a plan file (pointing at a good copy), a FIFO at a "
    "plan's name, a plans/ directory writable by others or owned by another user",
    "each refused in one line naming the path, by the reader and by the controller storing a plan; nothing "
    "written through the link",
)
@pytest.mark.parametrize("planted", ["plans dir symlink", "plan file symlink", "fifo", "group-writable", "not ours"])
def test_links_special_files_and_open_directories_are_refused(
    planted: str, tmp_path: Path, record_property: Record
) -> None:
    good = fresh(tmp_path, "good")
    ref = plan_store.store(good, PLAN)
    store = fresh(tmp_path)
    plans = store / "plans"
    name = plan_store.path_of(store, ref)
    if planted == "plans dir symlink":
        plans.symlink_to(good / "plans")
    else:
        plans.mkdir(mode=0o700)
        if planted == "plan file symlink":
            name.symlink_to(plan_store.path_of(good, ref))
        elif planted == "fifo":
            os.mkfifo(name, 0o600)
        elif planted == "group-writable":
            plans.chmod(0o770)
            name.write_bytes(plan_store.path_of(good, ref).read_bytes())
        else:
            if os.geteuid() != 0:
                pytest.skip("chown needs root")
            os.chown(plans, 65534, 65534)
            name.write_bytes(plan_store.path_of(good, ref).read_bytes())
    before = plan_store.path_of(good, ref).read_bytes()
    began = time.perf_counter()
    with pytest.raises(PlanStoreError) as read_refused:
        plan_store.read(store, ref)
    with pytest.raises(PlanStoreError) as store_refused:
        plan_store.store(store, PLAN)
    seconds = time.perf_counter() - began
    record_property(
        "observed",
        f"{planted}: read refused ({one_line(read_refused.value)[:100]!r}); store refused "
        f"({one_line(store_refused.value)[:100]!r}) in {seconds:.2f} s",
    )
    where = str(plans) if planted in ("plans dir symlink", "group-writable", "not ours") else str(name)
    assert where in str(read_refused.value) and where in str(store_refused.value)
    assert plan_store.path_of(good, ref).read_bytes() == before  # nothing written through the link


@pytest.mark.reliability(
    "a datacenter worker's artifact store without the run's plan (no plans/ directory, or not that plan)",
    "refused in one line naming the path it looked for and how to put the plan there",
)
@pytest.mark.parametrize("missing", ["no plans dir", "no plan file"])
def test_a_plan_not_in_the_store_names_the_path_and_the_fix(
    missing: str, tmp_path: Path, record_property: Record
) -> None:
    ref = plan_store.store(fresh(tmp_path, "controller"), PLAN)
    store = fresh(tmp_path, "worker")
    if missing == "no plan file":
        (store / "plans").mkdir(mode=0o700)
    with pytest.raises(PlanStoreError) as refused:
        plan_store.read(store, ref)
    text = one_line(refused.value)
    record_property("observed", text)
    assert str(store / "plans") in text and "--artifacts" in text and "copy" in text


def test_a_tampered_file_already_in_the_store_is_replaced_not_trusted(tmp_path: Path) -> None:
    store = fresh(tmp_path)
    ref = plan_store.store(store, PLAN)
    path = plan_store.path_of(store, ref)
    path.write_bytes(gzip.compress(b"{}", mtime=0))
    assert plan_store.store(store, PLAN) == ref
    assert plan_store.read(store, ref) == PLAN


@pytest.mark.parametrize(
    "ref",
    [
        PlanRef("../../etc/passwd", 10, 30, 1, G),
        PlanRef("A" * 64, 10, 30, 1, G),  # not lower-case hex: not a name the store writes
        PlanRef("0" * 64, 10, 30, 1, "../x"),
        PlanRef("0" * 64, 0, 30, 1, G),
        PlanRef("0" * 64, -5, 30, 1, G),
        PlanRef("0" * 64, 10, 10**9, 1, G),  # more than a gzip of 10 bytes can be
        PlanRef("0" * 64, 10, 30, 0, G),
        PlanRef("0" * 64, plan_store.MAX_SIZE + 1, 30, 1, G),
        PlanRef("0" * 64, 10_000_000, 9_000_000, 1, G),  # one part over half the payload budget
        PlanRef("0" * 64, True, 30, 1, G),
    ],
)
def test_a_malformed_reference_names_no_file(ref: PlanRef, tmp_path: Path) -> None:
    """A reference comes from a workflow, which anyone in the namespace can start: it is checked first."""
    with pytest.raises(PlanStoreError, match="not a plan reference"):
        plan_store.read(fresh(tmp_path), ref)


def test_no_artifact_store_is_refused_at_the_controller(tmp_path: Path) -> None:
    with pytest.raises(PlanStoreError, match="no artifact store at") as refused:
        plan_store.store(tmp_path / "nowhere", PLAN)
    assert "--artifacts" in one_line(refused.value)


def test_a_plan_is_parsed_once_per_process_by_its_verified_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """plan_ref.parsed: the same hash gives the same (immutable) Plan without parsing again; another hash
    is parsed; at most PARSED_KEPT are held, the least recently used let go."""
    from upgrader.temporal import plan_ref

    monkeypatch.setattr(plan_ref, "_PARSED", type(plan_ref._PARSED)())
    texts = {plan_store.text_of(case_plan(c)) for c in ("multi_hop", "no_canary")}
    a, b = sorted(texts)
    sha_a, sha_b = (hashlib.sha256(t.encode()).hexdigest() for t in (a, b))
    first = plan_ref.parsed(sha_a, a)
    assert plan_ref.parsed(sha_a, a) is first
    assert plan_ref.parsed(sha_b, b) is not first and plan_ref.parsed(sha_b, b).content_hash != first.content_hash
    for n in range(plan_ref.PARSED_KEPT):
        plan_ref.parsed(f"{n:064x}", b)
    assert len(plan_ref._PARSED) == plan_ref.PARSED_KEPT and sha_a not in plan_ref._PARSED
