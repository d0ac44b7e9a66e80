"""Decode an HdrHistogram interval log with the `hdrhistogram` PyPI package (module hdrh).

Prints one JSON object: for each tag, the number of interval lines and the total count of
values, so a Rust test can compare them with the load generator's own summary. This is an
independent decoder: it shares no code with the Rust writer.

Usage: python3 decode_hlog.py LOG_FILE
"""

import json
import sys

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader


def main() -> None:
    path = sys.argv[1]
    # Same range as the writer: 1 us to 1 h in nanoseconds, 3 significant figures.
    reference = HdrHistogram(1000, 3_600_000_000_000, 3)
    reader = HistogramLogReader(path, reference)
    totals = {}
    while True:
        histogram = reader.get_next_interval_histogram()
        if histogram is None:
            break
        tag = histogram.get_tag() or ""
        entry = totals.setdefault(tag, {"intervals": 0, "count": 0, "max": 0})
        entry["intervals"] += 1
        entry["count"] += histogram.get_total_count()
        entry["max"] = max(entry["max"], histogram.get_max_value())
    reader.close()
    json.dump(totals, sys.stdout)


if __name__ == "__main__":
    main()
