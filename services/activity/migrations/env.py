from services.activity.models import ActivityTable
from services.migrations import run_env

run_env(ActivityTable.metadata, "activity")
