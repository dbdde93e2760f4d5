from services.migrations import run_env
from services.payment.models import PaymentTable

run_env(PaymentTable.metadata, "payment")
