"""The ledger's tables: the chain head survives every pruning; the ledger
keeps to its size; the export lists every link."""

from __future__ import annotations

import os
import sqlite3

import pytest

from smemet.gateway.ledger import Delivered, LedgerStore, LedgerView
from smemet.gateway.ledger.store import AgreementConflict


@pytest.fixture
def store(tmp_path):
    s = LedgerStore(str(tmp_path / "ledger.sqlite"))
    yield s
    s.close()


def fill(store, route: str, deliveries: int, links: int = 4, start: float = 1_000.0) -> None:
    rows = [Delivered(route, 1 + i * links, os.urandom(32 * links), "A", 1, start + i, i * 10) for i in range(deliveries)]
    store.record(rows)


def test_retention_keeps_each_route_head(store):
    fill(store, "a", 100)
    fill(store, "b", 3)
    assert store.prune(before=1e9) == 99 + 2  # everything is old: all but each route's newest go
    head, upto = store.head("a")
    assert (head.seq, upto) == (400, 990)
    assert store.head("b")[0].seq == 12


def test_size_cap_prunes_the_oldest_first(store, tmp_path):
    fill(store, "a", 2000)  # ~2000 * (4 * 32 + 85) bytes
    size = store.size()
    assert size == 2000 * (4 * 32 + 60)
    assert store.shrink(max_bytes=size * 2) is None, "under the cap: nothing goes"
    oldest = store.shrink(max_bytes=size // 2)
    assert store.size() <= size // 2 * 9 // 10 + 213
    assert oldest is not None and oldest > 1_000.0
    view = LedgerView.open(str(tmp_path / "ledger.sqlite"))
    try:
        seqs = [e.seq for e in view.entries("a")]
    finally:
        view.close()
    assert seqs == list(range(seqs[0], 8001)) and seqs[0] > 1, "the newest kept, contiguous, head included"


def test_agreement_history_only_goes_up(store):
    assert store.record_agreement("r", "A", 1, "d1", {"v": 1}, now=10.0) == (None, True)
    before, new = store.record_agreement("r", "A", 1, "d1", {"v": 1}, now=20.0)
    assert not new and before.version == 1
    with pytest.raises(AgreementConflict, match="differ from those in force since"):
        store.record_agreement("r", "A", 1, "d2", {"v": 2})
    assert store.record_agreement("r", "A", 2, "d2", {"v": 2}, now=30.0)[1]
    with pytest.raises(AgreementConflict, match="older than version 2"):
        store.record_agreement("r", "A", 1, "d1", {"v": 1})
    assert [(h.version, h.since) for h in store.history("r")] == [(1, 10.0), (2, 30.0)]


def test_windows_only_move_forward(store):
    store.save_windows("r", [("n1", "tc1", 120.0), ("n1", "tc2", 60.0)])
    store.save_windows("r", [("n1", "tc1", 60.0)])  # an older confirmation arriving late
    assert store.windows("r") == {("n1", "tc1"): 120.0, ("n1", "tc2"): 60.0}


def test_a_delivery_is_rows_small_enough_to_prune(store, tmp_path):
    store.record([Delivered("a", 1, os.urandom(32 * 100), "A", 1, 1.0, 5)])  # 100 links: 5 rows of <= 24
    view = LedgerView.open(str(tmp_path / "ledger.sqlite"))
    try:
        assert [e.seq for e in view.entries("a")] == list(range(1, 101))
    finally:
        view.close()
    assert store.head("a")[0].seq == 100 and store.prune(before=10.0) == 4, "all but the newest row can go"
    db = sqlite3.connect(str(tmp_path / "ledger.sqlite"))
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"meta", "ledger", "ledger_checkpoints"}, "agreement tables only once a route needs them"
        assert db.execute("SELECT value FROM meta WHERE key = 'ledger_schema'").fetchone() == (1,)
    finally:
        db.close()
