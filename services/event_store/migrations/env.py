from services.event_store.models import EventStoreTable
from services.migrations import run_env

run_env(EventStoreTable.metadata, "event_store")
