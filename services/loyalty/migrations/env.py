from services.loyalty.models import LoyaltyTable
from services.migrations import run_env

run_env(LoyaltyTable.metadata, "loyalty")
