from services.migrations import run_env
from services.readmodel.models import ReadModelTable

run_env(ReadModelTable.metadata, "readmodel")
