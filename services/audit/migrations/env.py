from services.audit.models import AuditTable
from services.migrations import run_env

run_env(AuditTable.metadata, "audit")
