"""bench/api_overhead.py: the paths take every position in turn, and the table's paired column
is each round's difference from the first path. The measuring is the benchmark's
(make bench-api)."""

from __future__ import annotations

from collections import Counter

from bench.api_overhead import report, rotations


def test_over_as_many_rounds_as_paths_each_path_takes_each_position_once() -> None:
    names = ["client", "place", "asgi", "http", "404"]
    rounds = rotations(names, 2 * len(names))
    for position in range(len(names)):
        assert Counter(r[position] for r in rounds) == Counter({name: 2 for name in names})
    assert all(sorted(r) == sorted(names) for r in rounds)


def test_the_paired_column_is_the_median_of_each_rounds_difference_from_the_first_path() -> None:
    taken = {
        "client.start_workflow": [10.0, 20.0, 30.0, 40.0],
        "POST /orders over HTTP": [14.0, 25.0, 36.0, 40.0],  # +4, +5, +6, +0: median +4.5
    }
    lines = report(taken).splitlines()
    row = next(line for line in lines if line.strip().startswith("POST /orders over HTTP"))
    assert row.split()[-1] == "+4.50"
    assert row.split()[-4:-1] == [
        "4",
        "30.50",
        "40.00",
    ]  # N, p50, p90: of its own times, never past them
    baseline = next(line for line in lines if line.strip().startswith("client.start_workflow"))
    assert baseline.split()[-1] == "+0.00"
