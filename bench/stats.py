"""Latency statistics and the table every benchmark prints."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass
class Run:
    name: str
    concurrency: int
    latencies_ms: list[float]
    elapsed_s: float

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    line = "  ".join("{:>" + str(w) + "}" for w in widths)
    return "\n".join(
        [line.format(*headers), line.format(*("-" * w for w in widths))]
        + [line.format(*row) for row in rows]
    )
