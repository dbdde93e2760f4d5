"""The order event store: append-only, one stream per order, read back in one global order,
older event versions upcast as they are read; and the order aggregate, a fold over its events."""
