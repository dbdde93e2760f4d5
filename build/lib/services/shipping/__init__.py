from services.shipping.service import ShippingService

__all__ = ["ShippingService"]
