from services.inventory.models import InventoryTable
from services.migrations import run_env

run_env(InventoryTable.metadata, "inventory")
