"""The documented fuzz run of the ingest path (docs/fuzzing.md): a million
or more mutated and random frames over real UDP into a real gateway
(hil_tests/harness/fuzz.py).  Opt-in: it takes minutes; the normal tests run
a seeded 20,000-frame slice (gateway/tests/test_fuzz_ingest.py).

    .venv/bin/python bench/fuzz_ingest.py [--frames 1000000] [--seed 13]

Exit 0 when every frame was counted, none crashed the handling and memory
stayed flat; the report is printed as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test harness (hil_tests/harness)

from hil_tests.harness import fuzz  # noqa: E402

# After the first tenth (caches, SQLite's page cache, the replay windows
# filled), resident memory may not grow by more than this.
FLAT_KIB = 16 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()

    def progress(sent, total):
        print(f"fuzz: {sent:,} of {total:,} frames", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="smemet-fuzz-") as work:
        report = asyncio.run(fuzz.run(Path(work), args.frames, args.seed, progress))
    growth = report.rss_kib[-1] - report.rss_kib[1]
    ok = (report.crashes == 0 and report.received == report.sent == report.counted and not report.kernel_drops
          and growth <= FLAT_KIB)
    print(json.dumps({"frames": report.sent, "seed": args.seed, "received": report.received, "counted": report.counted,
                      "crashes": report.crashes, "kernel_drops": report.kernel_drops, "seconds": round(report.seconds, 1),
                      "frames_per_second": round(report.sent / report.seconds), "by_kind": report.by_kind,
                      "outcomes": dict(sorted(report.outcomes.items())), "rss_kib": report.rss_kib,
                      "rss_growth_after_first_tenth_kib": growth, "errors_logged": list(report.errors), "ok": ok},
                     indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
