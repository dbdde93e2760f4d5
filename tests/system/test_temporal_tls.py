"""Our processes' connection to a Temporal frontend that requires mutual TLS: the dev server
behind a TLS-terminating proxy (tests/tls.py), certificates from throwaway CAs.
``cloudmart.temporal.connect`` with the CA and a client certificate runs a workflow through it,
worker and client alike, sending the API key with every call; without a client certificate, or
with another CA's, the frontend refuses; without the frontend's CA, or expecting another name,
our client refuses the frontend."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.worker import Worker

from cloudmart.settings import Settings
from cloudmart.temporal import connect
from devstack.stack import DevStack, settings_env, throwaway_settings
from tests.support import TEST_PAYLOAD_KEYS
from tests.tls import CertificateAuthority, Issued, TLSProxy, mtls_server_context
from worker import READY

API_KEY = "eyJhbGciOiJSUzI1NiJ9.eyJwZXJtaXNzaW9ucyI6WyJkZWZhdWx0OndyaXRlIl19.c2lnbmF0dXJl"
"""Stands for a JWT with ``permissions: ["default:write"]`` (the dev server checks none)."""


@workflow.defn(sandboxed=False)
class Hello:
    @workflow.run
    async def run(self, name: str) -> str:
        return f"hello, {name}"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Issued
    client: Issued
    other_client: Issued
    """Issued by another CA, which the frontend does not trust."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority("cloudmart", directory)
    other = CertificateAuthority("other", directory)
    return Pki(
        ca=ca.cert,
        server=ca.issue("frontend", server=True),
        client=ca.issue("worker", server=False),
        other_client=other.issue("intruder", server=False),
    )


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Temporal's dev server alone, as `make up` starts it (no TLS), in memory."""
    settings = throwaway_settings(tmp_path_factory.mktemp("temporal"))
    (settings.data_dir / "logs").mkdir()
    stack = DevStack(settings, settings_env(settings), output=None, persist=False)
    stack.start_process("temporal")
    yield settings
    assert stack.stop() == {"temporal": 0}


@pytest.fixture
async def proxy(pki: Pki, dev_server: Settings) -> AsyncIterator[TLSProxy]:
    upstream = int(dev_server.temporal_address.rsplit(":", 1)[1])
    async with TLSProxy(mtls_server_context(pki.server, client_ca=pki.ca), upstream) as proxy:
        yield proxy


def through(proxy: TLSProxy, **tls: object) -> Settings:
    """Settings as a process reads them, pointing at the proxy with ``tls``."""
    return Settings(temporal_address=proxy.address, payload_keys=TEST_PAYLOAD_KEYS, **tls)  # type: ignore[arg-type]


@pytest.mark.parametrize("api_key", [None, API_KEY], ids=["certificate", "certificate+key"])
async def test_a_worker_and_a_client_run_a_workflow_over_mutual_tls(
    pki: Pki, proxy: TLSProxy, api_key: str | None
) -> None:
    settings = through(
        proxy,
        temporal_tls_ca=pki.ca,
        temporal_tls_cert=pki.client.cert,
        temporal_tls_key=pki.client.key,
        temporal_api_key=api_key,
    )
    client = await connect(settings)
    queue = f"tls-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[Hello]):
        said = await client.execute_workflow(
            Hello.run,
            "mTLS",
            id=f"hello-{uuid.uuid4()}",
            task_queue=queue,
            execution_timeout=timedelta(seconds=30),
        )
    assert said == "hello, mTLS"
    assert proxy.refused == []
    calls = [request for request in proxy.requests if ":path" in request]
    called = {request[":path"].rsplit("/", 1)[1] for request in calls}
    assert {"StartWorkflowExecution", "PollWorkflowTaskQueue"} <= called
    # Every call, the worker's polls included, carries the key as a bearer token, or none.
    expected = None if api_key is None else f"Bearer {api_key}"
    assert {request.get("authorization") for request in calls} == {expected}


@pytest.mark.parametrize(
    ("certificate", "reason"),
    [
        (None, "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
        ("other_client", "CERTIFICATE_VERIFY_FAILED"),
    ],
    ids=["no-client-certificate", "another-cas-certificate"],
)
async def test_the_frontend_refuses_a_client_without_a_certificate_it_trusts(
    pki: Pki, proxy: TLSProxy, certificate: str | None, reason: str
) -> None:
    issued: Issued | None = getattr(pki, certificate) if certificate else None
    settings = through(
        proxy,
        temporal_tls_ca=pki.ca,
        temporal_tls_cert=issued.cert if issued else None,
        temporal_tls_key=issued.key if issued else None,
        temporal_api_key=API_KEY,
    )
    with pytest.raises(RuntimeError) as refused:
        await connect(settings)
    assert set(proxy.refused) == {reason}
    assert proxy.requests == []  # not one call got through
    assert API_KEY not in str(refused.value)


@pytest.mark.parametrize(
    ("trusts_the_ca", "server_name", "why"),
    [(False, None, "UnknownIssuer"), (True, "elsewhere.test", "NotValidForName")],
    ids=["without-the-frontends-ca", "expecting-another-name"],
)
async def test_our_client_refuses_a_frontend_it_cannot_verify(
    pki: Pki, proxy: TLSProxy, trusts_the_ca: bool, server_name: str | None, why: str
) -> None:
    settings = through(
        proxy,
        temporal_tls=True,
        temporal_tls_ca=pki.ca if trusts_the_ca else None,  # None: the system's roots
        temporal_tls_server_name=server_name,
        temporal_tls_cert=pki.client.cert,
        temporal_tls_key=pki.client.key,
    )
    with pytest.raises(RuntimeError, match=f"InvalidCertificate\\({why}"):
        await connect(settings)
    assert proxy.requests == []


async def test_the_frontend_is_verified_against_the_server_name_given(
    pki: Pki, proxy: TLSProxy
) -> None:
    settings = through(
        proxy,
        temporal_tls_ca=pki.ca,
        temporal_tls_cert=pki.client.cert,
        temporal_tls_key=pki.client.key,
        temporal_tls_server_name="localhost",
    )
    client = await connect(settings)
    await client.count_workflows()
    assert proxy.refused == []


async def run_worker(settings: Settings, tmp_path: Path) -> tuple[int, str]:
    """``python -m worker`` (shipping's) with ``settings`` in its environment: stopped once
    ready, or left to exit; its status and output. Asynchronous: the proxy runs in this loop."""
    env = settings_env(settings.model_copy(update={"data_dir": tmp_path}))
    worker = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "worker", "--service", "shipping"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert worker.stdout is not None
    output = []
    async with asyncio.timeout(60):
        while line := (await worker.stdout.readline()).decode():
            output.append(line)
            if READY in line:
                worker.send_signal(signal.SIGTERM)
        return await worker.wait(), "".join(output)


async def test_a_worker_process_connects_with_the_certificate_in_its_environment(
    pki: Pki, proxy: TLSProxy, tmp_path: Path
) -> None:
    settings = through(
        proxy,
        temporal_tls_ca=pki.ca,
        temporal_tls_cert=pki.client.cert,
        temporal_tls_key=pki.client.key,
        temporal_api_key=API_KEY,
    )
    status, output = await run_worker(settings, tmp_path)
    assert (status, READY in output) == (0, True), output
    calls = [request for request in proxy.requests if ":path" in request]
    assert calls and {call.get("authorization") for call in calls} == {f"Bearer {API_KEY}"}
    assert API_KEY not in output


async def test_a_worker_process_the_frontend_refuses_says_what_to_check(
    pki: Pki, proxy: TLSProxy, tmp_path: Path
) -> None:
    settings = through(proxy, temporal_tls_ca=pki.ca, temporal_api_key=API_KEY)
    status, output = await run_worker(settings, tmp_path)
    assert status == 1, output
    assert f"worker: cannot reach Temporal at {proxy.address} (is it running? over TLS" in output
    assert "CLOUDMART_TEMPORAL_TLS_CERT" in output
    assert "Traceback" not in output
    assert API_KEY not in output
    assert set(proxy.refused) == {"PEER_DID_NOT_RETURN_A_CERTIFICATE"}
