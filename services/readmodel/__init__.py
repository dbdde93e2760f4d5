"""The read side (CQRS): projections of the order events, for listing, stats and search."""
