from services.migrations import run_env
from services.shipping.models import ShippingTable

run_env(ShippingTable.metadata, "shipping")
