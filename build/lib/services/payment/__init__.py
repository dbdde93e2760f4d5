from services.payment.provider import PaymentProvider, SimulatedProvider
from services.payment.service import PaymentService

__all__ = ["PaymentProvider", "PaymentService", "SimulatedProvider"]
