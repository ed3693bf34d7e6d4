"""Spill files: a live writer's segment cannot be claimed; a sealed one can, by one claimant."""

from __future__ import annotations

from pathlib import Path

from gateway.accounting.spool import Spool
from tests.gateway.accounting.helpers import make_record


def test_a_segment_is_claimable_only_once_sealed_and_only_by_one(tmp_path: Path) -> None:
    records = [make_record(i) for i in range(10)]
    writer = Spool(tmp_path)
    writer.append(records[:4])
    writer.append(records[4:])
    (segment,) = writer.segments()
    replayer = Spool(tmp_path)
    assert replayer.claim(segment) is None  # still being appended to

    writer.seal()
    claim = replayer.claim(segment)
    assert claim is not None
    assert replayer.claim(segment) is None  # one claimant at a time
    batches = list(claim.batches(3))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert [r for b in batches for r in b] == records
    claim.remove()
    claim.release()
    assert replayer.segments() == []


def test_a_new_segment_after_seal_and_stale_partials_cleared(tmp_path: Path) -> None:
    (tmp_path / "spill-00000000000000000001-1-deadbeef.jsonl.part").write_bytes(b"")
    spool = Spool(tmp_path)
    spool.append([make_record(1)])
    spool.seal()
    spool.append([make_record(2)])
    assert len(spool.segments()) == 2
    assert not list(tmp_path.glob("*.part"))
