"""A seeded 20,000-frame slice of the fuzz run (docs/fuzzing.md): mutated
and random frames over real UDP into a real gateway.  None may crash the
handling, every one is counted by outcome, the counts match what the outbox
holds, and memory stays flat.  The full run: bench/fuzz_ingest.py."""

from __future__ import annotations

import sqlite3

from hil_tests.harness import fuzz

FRAMES = 20_000
SEED = 20_000


async def test_a_seeded_slice_of_mutated_frames_is_counted_and_crashes_nothing(tmp_path):
    report = await fuzz.run(tmp_path, FRAMES, SEED)
    assert report.crashes == 0, report.errors
    assert report.errors == (), report.errors
    assert not report.kernel_drops, "paced: the kernel drops none, so every frame reached admission"
    assert report.sent == report.received == FRAMES
    assert report.counted == FRAMES, report.outcomes  # accepted + duplicate + refused + rejected by reason
    assert all(report.by_kind[kind] > 0 for kind in fuzz.KINDS), report.by_kind
    reasons = {name for name, count in report.outcomes.items() if name.startswith("rejected:") and count}
    assert {"rejected:malformed", "rejected:bad-mac", "rejected:unknown-node", "rejected:replayed"} <= reasons, reasons
    assert report.outcomes["accepted"] > 0 and report.outcomes["duplicate"] > 0
    with sqlite3.connect(tmp_path / "outbox.sqlite") as db:  # what was counted accepted is what is stored
        assert db.execute("SELECT count(*) FROM frames").fetchone()[0] == report.outcomes["accepted"]
    growth = report.rss_kib[-1] - report.rss_kib[1]
    assert growth < 8 * 1024, report.rss_kib  # KiB, after the first tenth
