"""A product's ratings in the search: the arithmetic of one customer, one current rating.

Pure (no database), so the projector's live path and its rebuild fold the same events into
exactly the same numbers, and the unit tests can check the arithmetic on its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tally:
    count: int = 0
    """Customers with a current rating."""
    total: int = 0
    """The sum of their current stars."""

    def rate(self, stars: int, previous: int | None) -> Tally:
        """With a customer's new rating; ``previous`` is their earlier one, which it
        supersedes (counted once, never twice), or None for their first."""
        if previous is None:
            return Tally(self.count + 1, self.total + stars)
        return Tally(self.count, self.total - previous + stars)

    @property
    def average(self) -> float | None:
        """None while unrated: no rating is not a rating of 0, and sorts after every real one."""
        return self.total / self.count if self.count else None
