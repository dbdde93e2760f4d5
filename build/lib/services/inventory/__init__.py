from services.inventory.service import InventoryService

__all__ = ["InventoryService"]
