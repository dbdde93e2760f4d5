"""Choreography's mechanics: how a service reacts to events and publishes its own, exactly once.

No coordinator: each reacting service follows the event store on its own and keeps, in its own
database,

- a checkpoint (``consumer.py``): how far its consumer has read the store;
- an inbox (``consumer.py``): the ids of the events it has handled, written in the same
  transaction as its own state change and the events it publishes, so an effect, its "handled"
  mark and its reaction are committed together or not at all;
- an outbox (``outbox.py``): the events it publishes, written in that same transaction and
  moved to the event store afterwards by a ``Relay``, idempotently by event id;
- its delivery failures (``dead_letters.py``): attempts counted in a transaction of their own;
  after N the event is parked (a dead letter for that consumer) and the consumer moves on, until
  an operator retries or skips it.

The tables (``tables.py``) are added to each service's own metadata and created by that
service's own migration (``schema.py``). Nothing here knows what a return is: the return saga's
reactions live in each service's package (services/<service>/returns.py); docs/returns.md
tells the whole story.
"""
