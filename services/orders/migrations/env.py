from services.migrations import run_env
from services.orders.models import OrdersTable

run_env(OrdersTable.metadata, "orders")
