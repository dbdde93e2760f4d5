"""The services behind the saga, each owning its tables in its own database (nothing else writes
them), with its own Alembic history:

- ``inventory``, ``payment`` (with the simulated payment provider and the fraud screen) and
  ``shipping``: the saga's steps and compensations, called through ``activities/``;
- ``event_store``: the order event store the saga appends to, and the order aggregate;
- ``readmodel``: the projections built from the events (the query side of CQRS);
- ``loyalty``: a subscriber that reacts to the events on its own (choreography).

``factory.py`` builds them from the settings, ``migrations.py`` upgrades their databases, and
``reconcile.py`` checks the books across them.
"""
