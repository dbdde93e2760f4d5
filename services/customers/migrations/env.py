from services.customers.models import CustomersTable
from services.migrations import run_env

run_env(CustomersTable.metadata, "customers")
