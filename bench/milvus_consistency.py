"""What a search of the reference-hash collection costs at each consistency level (issue 20).

The pipeline's writer searches the watched cases' reference hashes once a bundle. Strong
consistency waits for Milvus's next time tick; a guarantee timestamp of a moment already past
(``stores/milvus.seen_writes``, the newest reference's ``hashes_written_at``) does not. Runs
against the local stack's Milvus (``mimamori stack up``), in a scratch collection of its own.

    .venv/bin/python bench/milvus_consistency.py [--searches 10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from mimamori.core.config import load_settings
    from mimamori.media.pdq import PdqHash
    from mimamori.stores.image_hashes import ReferenceHash, ReferenceHashes
    from tests.support.scratch import scratch_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searches", type=int, default=10, help="searches timed per row")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with scratch_settings(load_settings("local"), "bench") as settings:
        hashes = ReferenceHashes(settings)
        hashes.add([ReferenceHash("bench-case", f"{i:064x}", 0, "original", PdqHash(rng.bytes(32), 100))
                    for i in range(160)])
        written_by = dt.datetime.now(dt.UTC)
        time.sleep(settings.milvus.clock_skew_s + 0.5)  # the moment plus the skew has passed, as it has a bundle later
        queries = [rng.bytes(32) for _ in range(8)]
        print(f"| consistency | ms a search (median of {args.searches}) |")
        print("| --- | --- |")
        for label, moment in (("Strong (before)", None), ("guarantee timestamp: the newest reference's write",
                                                          written_by)):
            times = []
            for _ in range(args.searches):
                began = time.perf_counter()
                hashes.nearest(queries, ["bench-case"], 31, 5, moment)
                times.append(time.perf_counter() - began)
            print(f"| {label} | {1000 * float(np.median(times)):.1f} |")


if __name__ == "__main__":
    main()
