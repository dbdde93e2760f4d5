"""docker-compose.yml and the Dockerfile, checked without a Docker engine (none runs here):
everything that can be known from the files, and the image's install step done for real."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import make_url

from cloudmart import tracing
from cloudmart.codec import new_key_entry
from cloudmart.settings import DATABASES, Settings
from devstack.stack import WORKER_ROLES
from services.migrations import MIGRATED

ROOT = Path(__file__).parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES_IN_COMPOSE: dict[str, dict[str, Any]] = COMPOSE["services"]
WORKERS = {f"worker-{role}": role for role in WORKER_ROLES}
READS = {
    "orchestrator": {"event_store"},
    "customers": {"customers", "event_store"},
    "inventory": {"inventory"},
    "payment": {"payment", "payment_provider"},
    "shipping": {"shipping"},
    "projector": {"event_store", "readmodel", "inventory", "customers"},
    "loyalty": {"event_store", "loyalty"},
    "shipping-eraser": {"event_store", "shipping"},
    "shipping-returns": {"event_store", "shipping"},
    "inventory-returns": {"event_store", "inventory"},
    "payment-returns": {"event_store", "payment", "payment_provider"},
    "loyalty-returns": {"event_store", "loyalty"},
}
"""The databases each worker may be given: its own, and (subscribers) the events they follow."""
DEFAULT = re.compile(r"\$\{(\w+)(:-([^}]*))?\}")
REQUIRED = re.compile(r"\$\{(\w+):\?([^}]+)\}")
"""``${NAME:?message}``: compose refuses to start unless NAME is set (and not empty): no default
is safe."""
OPERATOR_SUPPLIED = {
    "CLOUDMART_PAYLOAD_KEYS": new_key_entry("k1"),
    **{
        name: f"{name.lower()}-as-the-operator-sets-it"
        for name in ("CLOUDMART_OPERATOR_TOKEN", "CLOUDMART_AUTH_SECRET")
    },
}
"""What an operator sets for each required variable."""


def environment(service: str) -> dict[str, str]:
    """A container's environment as compose would give it, with the documented defaults and
    the required variables set as an operator would set them."""
    env = SERVICES_IN_COMPOSE[service].get("environment") or {}
    defaulted = {k: DEFAULT.sub(lambda m: m.group(3) or "", str(v)) for k, v in env.items()}
    return {
        k: REQUIRED.sub(lambda m: OPERATOR_SUPPLIED[m.group(1)], v) for k, v in defaulted.items()
    }


def test_images_are_pinned_to_the_reference_tags() -> None:
    images = {name: spec.get("image") for name, spec in SERVICES_IN_COMPOSE.items()}
    assert images["postgresql"] == "postgres:16"
    assert images["temporal"] == "temporalio/server:1.30.1"
    assert images["temporal-schema"] == images["temporal-setup"] == "temporalio/admin-tools:1.30.1"
    assert images["temporal-ui"] == "temporalio/ui:2.34.0"
    assert images["prometheus"] == "prom/prometheus:v2.53.0"
    assert images["grafana"] == "grafana/grafana:11.1.0"
    assert images["jaeger"] == "jaegertracing/all-in-one:1.60.0"
    assert not any("auto-setup" in (image or "") for image in images.values())
    for name in (*WORKERS, "api"):
        assert SERVICES_IN_COMPOSE[name]["build"] == "."


def published(service: str) -> list[tuple[str, str, str]]:
    """``(host ip, host port, container port)`` of each port ``service`` publishes, in either
    of compose's syntaxes; an empty host ip means every interface."""
    found = []
    for port in SERVICES_IN_COMPOSE[service].get("ports", []):
        if isinstance(port, dict):  # long syntax
            found.append(
                (str(port.get("host_ip", "")), str(port.get("published", "")), str(port["target"]))
            )
            continue
        spec = str(port).split("/")[0]  # drop a /tcp or /udp
        host, _, container = spec.rpartition(":")
        ip, _, host_port = host.rpartition(":") if host.count(":") >= 1 else ("", "", host)
        found.append((ip.strip("[]"), host_port or container, container))
    return found


LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def test_ports_are_the_documented_ones() -> None:
    assert published("api") == [("", "8000", "8000")]
    assert published("temporal-ui") == [("127.0.0.1", "8080", "8080")]
    assert published("temporal") == [("127.0.0.1", "7233", "7233")]
    assert published("prometheus") == [("127.0.0.1", "9090", "9090")]
    assert published("grafana") == [("127.0.0.1", "3000", "3000")]
    assert published("jaeger") == [("127.0.0.1", "16686", "16686")]  # its UI; OTLP stays inside


@pytest.mark.parametrize(
    ("ports", "exposed"),
    [
        (["7233:7233"], True),
        (["0.0.0.0:7233:7233"], True),
        (["7233"], True),
        ([{"target": 7233, "published": 7233}], True),
        (["127.0.0.1:7233:7233"], False),
        (["[::1]:7233:7233/tcp"], False),
        ([{"target": 7233, "published": 7233, "host_ip": "127.0.0.1"}], False),
    ],
)
def test_the_port_check_reads_both_syntaxes(
    ports: list[object], exposed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(SERVICES_IN_COMPOSE, "probe", {"ports": ports})
    assert any(ip not in LOOPBACK for ip, _, _ in published("probe")) is exposed


def test_nothing_unauthenticated_is_published_on_every_interface() -> None:
    """Issue 21: Temporal's frontend and its Web UI check no credential (whoever reaches the
    frontend can start, signal, update or terminate a saga); PostgreSQL has the laptop
    passwords. Only the API, which checks tokens, may listen on every interface."""
    for name, spec in SERVICES_IN_COMPOSE.items():
        if name == "api":
            continue
        exposed = [port for port in published(name) if port[0] not in LOOPBACK]
        assert not exposed, f"{name} publishes {exposed} on every interface"
        assert "network_mode" not in spec, f"{name} would share the host's network"
    assert "ports" not in SERVICES_IN_COMPOSE["postgresql"]
    assert environment("temporal")["BIND_ON_IP"] == "0.0.0.0"  # inside its container only


def test_every_cloudmart_variable_is_a_setting_the_code_reads() -> None:
    fields = {f"CLOUDMART_{name.upper()}" for name in Settings.model_fields}
    for name in (*WORKERS, "api"):
        env = environment(name)
        unknown = {k for k in env if k.startswith("CLOUDMART_")} - fields
        assert not unknown, f"{name}: {unknown} are not settings"
        settings = Settings(
            **{
                k.removeprefix("CLOUDMART_").lower(): v
                for k, v in env.items()
                if k.startswith("CLOUDMART_")
            }
        )
        assert settings.temporal_address == "temporal:7233"


def test_each_worker_runs_its_service_with_only_its_own_databases() -> None:
    for name, role in WORKERS.items():
        spec = SERVICES_IN_COMPOSE[name]
        assert spec["command"][:4] == ["python", "worker.py", "--service", role]
        ready = spec["command"][spec["command"].index("--ready-file") + 1]
        assert spec["healthcheck"]["test"] == ["CMD", "test", "-f", ready]
        urls = {k for k in environment(name) if k.endswith("_DB_URL")}
        assert urls == {f"CLOUDMART_{db.upper()}_DB_URL" for db in READS[role]}, name
    assert SERVICES_IN_COMPOSE["api"]["command"] == ["python", "-m", "api"]


def test_each_database_is_distinct_and_created_on_first_start() -> None:
    urls: dict[str, str] = {}
    for name in (*WORKERS, "api"):
        for key, value in environment(name).items():
            if key.endswith("_DB_URL"):
                database = key.removeprefix("CLOUDMART_").removesuffix("_DB_URL").lower()
                assert urls.setdefault(database, value) == value, f"{database} differs in {name}"
    assert set(urls) == set(DATABASES)
    names = {make_url(url).database for url in urls.values()}
    assert len(names) == len(DATABASES)
    assert all(make_url(url).drivername == "postgresql+psycopg" for url in urls.values())
    created = set(
        re.findall(
            r"CREATE DATABASE (\w+)", (ROOT / "deploy/postgres/create-databases.sh").read_text()
        )
    )
    assert created == names


def test_start_order_and_health() -> None:
    def waits_for(service: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in SERVICES_IN_COMPOSE[service]["depends_on"].items()}

    assert waits_for("temporal-schema") == {"postgresql": "service_healthy"}
    assert waits_for("temporal") == {"temporal-schema": "service_completed_successfully"}
    assert waits_for("temporal-setup") == {"temporal": "service_healthy"}
    for name in WORKERS:
        assert waits_for(name) == {
            "postgresql": "service_healthy",
            "temporal-setup": "service_completed_successfully",
        }
    # The API reads what the orchestrator and the subscribers migrate.
    for name in ("worker-orchestrator", "worker-projector", "worker-loyalty"):
        assert waits_for("api")[name] == "service_healthy"
    for name in ("postgresql", "temporal", "api", *WORKERS):
        assert "healthcheck" in SERVICES_IN_COMPOSE[name], name


def test_the_api_requires_tokens_and_secrets_the_operator_must_set() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    required = dict(REQUIRED.findall(text))
    assert set(required) == set(OPERATOR_SUPPLIED)
    for name, message in required.items():
        assert message.startswith(f"set {name}"), message
        assert name in text.split("\n\n")[0], f"{name} is not documented at the top of the file"
    raw = SERVICES_IN_COMPOSE["api"]["environment"]
    for name in OPERATOR_SUPPLIED:
        assert REQUIRED.fullmatch(raw[name]), f"{name} must have no default"
    env = environment("api")
    settings = Settings(
        **{k.removeprefix("CLOUDMART_").lower(): v for k, v in env.items() if "CLOUDMART_" in k}
    )
    assert settings.require_auth is True
    assert settings.operator_token is not None and settings.auth_secret is not None
    assert (
        settings.operator_token.get_secret_value() == OPERATOR_SUPPLIED["CLOUDMART_OPERATOR_TOKEN"]
    )
    # Only the API checks tokens; no worker is given a secret it does not need.
    auth_secrets = {"CLOUDMART_OPERATOR_TOKEN", "CLOUDMART_AUTH_SECRET"}
    for name in WORKERS:
        assert not set(environment(name)) & auth_secrets, name


def test_every_secret_has_a_documented_default() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    variables = DEFAULT.findall(REQUIRED.sub("", text))  # the required ones: above
    assert variables and all(default for _, default, _ in variables)
    for name, _, _ in variables:
        assert name in text.split("\n\n")[0], f"{name} is not documented at the top of the file"


def test_payload_keys_must_be_given_and_reach_every_process_that_talks_to_temporal() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    required = {name for name, _ in REQUIRED.findall(text)}
    assert required == set(OPERATOR_SUPPLIED)
    for name in required:
        assert name in text.split("\n\n")[0], f"{name} is not documented at the top of the file"
    raw = {
        name: SERVICES_IN_COMPOSE[name]["environment"]["CLOUDMART_PAYLOAD_KEYS"]
        for name in (*WORKERS, "api")
    }
    assert all(REQUIRED.fullmatch(value) for value in raw.values()), raw  # never a default
    for name in (*WORKERS, "api"):
        settings = Settings(payload_keys=environment(name)["CLOUDMART_PAYLOAD_KEYS"])
        assert [key.id for key in settings.payload_key_ring] == ["k1"]


def test_the_web_ui_decodes_through_the_apis_codec_server_with_the_operators_session() -> None:
    ui = environment("temporal-ui")
    [(_, api_port, _)] = published("api")
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == f"http://localhost:{api_port}/codec"
    # The browser sends the codec session cookie (SameSite=Strict: same host, another port).
    assert ui["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"
    [(_, ui_port, _)] = published("temporal-ui")
    api = Settings(codec_cors_origins=environment("api")["CLOUDMART_CODEC_CORS_ORIGINS"])
    assert f"http://localhost:{ui_port}" in api.codec_origins


def test_mounted_scripts_exist_and_parse() -> None:
    for spec in SERVICES_IN_COMPOSE.values():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                path = ROOT / source
                assert path.exists(), source
                if path.suffix == ".sh":
                    subprocess.run(["sh", "-n", str(path)], check=True)


def test_the_dockerfile_installs_the_package_and_runs_the_worker() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert base and ":" in base.group(1) and not base.group(1).endswith(":latest")
    assert "pip install -c constraints.txt ." in dockerfile
    assert 'CMD ["python", "worker.py"]' in dockerfile
    assert "USER cloudmart" in dockerfile
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in packages["packages"]["find"]["include"]:
        assert f"COPY {package.rstrip('*')} " in dockerfile
    assert "COPY worker.py" in dockerfile


def test_the_installed_package_carries_its_migrations(tmp_path: Path) -> None:
    """What the image's `pip install .` produces, run: the migrations come with the package."""
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(site), "CLOUDMART_DATA_DIR": str(tmp_path / "data")}
    env = {k: v for k, v in env.items() if not k.endswith("_DB_URL")}
    migrated = subprocess.run(
        [sys.executable, "-m", "services.migrations"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.splitlines() == [f"{s}: database at head" for s in MIGRATED]
    imported_from = subprocess.run(
        [sys.executable, "-c", "import services; print(services.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert imported_from.startswith(str(site))


@pytest.mark.parametrize("service", MIGRATED)
def test_each_service_has_one_migration_history(service: str) -> None:
    assert (ROOT / "services" / service / "alembic.ini").exists()
    assert list((ROOT / "services" / service / "migrations" / "versions").glob("0001_*.py"))


PROMETHEUS = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())


def scraped() -> dict[str, set[str]]:
    """Prometheus's targets, ``host:port``, by job."""
    return {
        job["job_name"]: {t for config in job["static_configs"] for t in config["targets"]}
        for job in PROMETHEUS["scrape_configs"]
    }


def test_prometheus_scrapes_every_process_where_it_serves_its_metrics() -> None:
    targets = scraped()
    cloudmart = targets["cloudmart-api"] | targets["cloudmart-workers"]
    for name in (*WORKERS, "api"):
        address = environment(name)["CLOUDMART_METRICS_ADDRESS"]
        assert Settings(metrics_address=address).metrics_address == address
        assert f"{name}:{address.rsplit(':', 1)[1]}" in cloudmart, f"{name} is not scraped"
    assert len(cloudmart) == len(WORKERS) + 1  # and nothing that does not exist
    [temporal] = targets["temporal"]
    assert temporal == f"temporal:{environment('temporal')['PROMETHEUS_ENDPOINT'].rsplit(':')[1]}"


def test_grafana_is_provisioned_with_prometheus_and_the_dashboards() -> None:
    grafana = SERVICES_IN_COMPOSE["grafana"]
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in grafana["volumes"])
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    sources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    [source] = sources["datasources"]
    [(_, prometheus_port, _)] = published("prometheus")
    assert source["url"] == f"http://prometheus:{prometheus_port}" and source["uid"] == "prometheus"
    providers = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/dashboards.yml").read_text()
    )
    [provider] = providers["providers"]
    assert provider["options"]["path"] == mounts["./deploy/grafana/dashboards"]
    dashboards = sorted(p.name for p in (ROOT / "deploy/grafana/dashboards").glob("*.json"))
    assert dashboards == ["cloudmart.json", "temporal-sdk.json"]


def test_every_process_sends_its_traces_to_jaeger() -> None:
    """Compose's processes trace (cloudmart/tracing.py turns on from the standard variable),
    each under its own service name, to the trace backend compose runs, on its OTLP/HTTP port."""
    for name in (*WORKERS, "api"):
        env = environment(name)
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318", name
        assert tracing.exporters(env) == ["otlp"], name
        assert "OTEL_SERVICE_NAME" not in env  # cloudmart-<service>, from worker.py --service
    jaeger = environment("jaeger")
    assert jaeger["COLLECTOR_OTLP_ENABLED"] == "true"
    assert int(jaeger["MEMORY_MAX_TRACES"]) > 0  # in memory, bounded: it would grow for ever
