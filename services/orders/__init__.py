"""The orders service: the order event store (append-only) and the order aggregate."""
