"""The saga's three services. Each owns its tables in its own database; nothing else writes
them."""
