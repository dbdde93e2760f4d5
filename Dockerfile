# One image for the API and every worker: docker-compose.yml picks the command.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, pinned by the same constraints as CI, so code changes reuse this layer.
COPY pyproject.toml constraints.txt README.md ./
COPY cloudmart ./cloudmart
COPY services ./services
COPY activities ./activities
COPY workflows ./workflows
COPY api ./api
COPY worker.py ./
# Bytecode now: PYTHONDONTWRITEBYTECODE keeps it from being written at run time, and without it
# the workflow sandbox compiles the saga's modules afresh for every order it starts.
RUN pip install -c constraints.txt . \
    && python -m compileall -q cloudmart services activities workflows api worker.py \
    && useradd --create-home --uid 10001 cloudmart

USER cloudmart
EXPOSE 8000

# Default: every worker in one process; compose runs `python worker.py --service <name>` per
# service and `python -m api` for the API.
CMD ["python", "worker.py"]
