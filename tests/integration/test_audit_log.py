"""The audit log on real databases (SQLite and PostgreSQL): appends form one chain, also when
they race; the database refuses changes; ``make audit-verify`` finds an entry edited or deleted
underneath (with the triggers out of the way, as whoever owns the tables could) and says which;
and the API records every state-changing request, with who made it, and shows the log to
operators alone."""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from api.tokens import mint, mint_operator
from cloudmart.settings import Settings
from services.audit import verify as verify_cli
from services.audit.chain import Action
from services.audit.log import AuditLog, Filter
from services.database import create_db_engine
from services.factory import build_audit
from services.migrations import upgrade
from services.readmodel import rebuild
from tests.unit.api_stub import AUTH_SECRET, OPERATOR_TOKEN, bearer, client_of, real_app
from tests.unit.api_stub import settings as api_settings


def action(n: int, actor: str = "alice", kind: str = "operator") -> Action:
    return Action(
        actor_kind=kind,  # type: ignore[arg-type]
        actor=actor,
        action="POST /orders/{order_id}/cancel",
        resource=f"/orders/o-{n}",
        request_id=f"r-{n}",
        outcome="202",
    )


@pytest.fixture
def audit(settings: Settings) -> Iterator[AuditLog]:
    log = build_audit(settings)
    yield log
    log.engine.dispose()


def tamper(audit: AuditLog, statement: str) -> None:
    """Run ``statement`` as the tables' owner would, past the triggers."""
    with audit.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SET LOCAL session_replication_role = replica"))
            connection.execute(text(statement))
        else:
            for trigger in ("audit_entries_no_update", "audit_entries_no_delete"):
                connection.execute(text(f"DROP TRIGGER IF EXISTS {trigger}"))
            connection.execute(text(statement))


def verified(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], settings: Settings
) -> tuple[int, str, str]:
    monkeypatch.setattr(verify_cli, "get_settings", lambda: settings)
    status = verify_cli.main()
    out, err = capsys.readouterr()
    return status, out, err


def test_appends_chain_up_and_read_back_with_filters(audit: AuditLog) -> None:
    for n in range(1, 6):
        audit.append(action(n, actor="bob" if n == 3 else "alice"))
    entries = audit.entries()
    assert [e.sequence for e in entries] == [1, 2, 3, 4, 5]
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    assert all(a.occurred_at <= b.occurred_at for a, b in itertools.pairwise(entries))
    assert [e.sequence for e in audit.entries(Filter(actor="bob"))] == [3]
    assert [e.sequence for e in audit.entries(Filter(resource="/orders/o-4"))] == [4]
    assert [e.sequence for e in audit.entries(Filter(after=2), limit=2)] == [3, 4]
    third = entries[2].occurred_at
    assert [e.sequence for e in audit.entries(Filter(since=third))] == [3, 4, 5]
    assert [e.sequence for e in audit.entries(Filter(until=third))] == [1, 2]
    assert audit.entries(Filter(actor_kind="customer")) == []
    verdict = audit.verify()
    assert (verdict.count, verdict.head_sequence, verdict.broken) == (5, 5, None)
    assert verdict.head_hash == entries[-1].hash


def test_the_database_refuses_to_change_or_remove_an_entry(audit: AuditLog) -> None:
    audit.append(action(1))
    audit.append(action(2))
    for statement in (
        "UPDATE audit_entries SET outcome = '500' WHERE sequence = 1",
        "DELETE FROM audit_entries WHERE sequence = 2",
        "UPDATE audit_head SET sequence = 1",  # the head only moves one entry forward
        "UPDATE audit_head SET sequence = 5",
        "DELETE FROM audit_head",
    ):
        with (
            pytest.raises(DBAPIError, match=r"append-only|only advances"),
            audit.engine.begin() as connection,
        ):
            connection.execute(text(statement))
    if audit.engine.dialect.name == "postgresql":
        with (
            pytest.raises(DBAPIError, match="append-only"),
            audit.engine.begin() as connection,
        ):
            connection.execute(text("TRUNCATE audit_entries CASCADE"))
    assert audit.verify().broken is None and audit.verify().count == 2


def test_verify_names_an_edited_entry(
    audit: AuditLog,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for n in range(1, 6):
        audit.append(action(n))
    status, out, err = verified(monkeypatch, capsys, settings)
    head = audit.verify().head_hash
    assert (status, out, err) == (0, f"audit log intact: 5 entries, head 5 {head}\n", "")
    tamper(audit, "UPDATE audit_entries SET actor = 'mallory' WHERE sequence = 3")
    status, out, err = verified(monkeypatch, capsys, settings)
    assert (status, out) == (1, "")
    assert err == (
        "audit log BROKEN at sequence 3: hash mismatch: the entry was edited "
        "(2 entries intact before it)\n"
    )


def test_verify_names_where_an_entry_was_deleted(
    audit: AuditLog,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for n in range(1, 6):
        audit.append(action(n))
    tamper(audit, "DELETE FROM audit_entries WHERE sequence = 3")
    status, _, err = verified(monkeypatch, capsys, settings)
    assert status == 1
    assert err.startswith(
        "audit log BROKEN at sequence 3: missing: a gap after sequence 2 (the next entry is 4)"
    )
    tamper(audit, "DELETE FROM audit_entries WHERE sequence >= 4")  # and now from the end
    status, _, err = verified(monkeypatch, capsys, settings)
    assert (status, err) == (
        1,
        "audit log BROKEN at sequence 3: missing: the log ends at sequence 2 but its head is at "
        "5; entries were deleted from the end (2 entries intact before it)\n",
    )


def test_concurrent_appenders_keep_one_valid_chain(settings: Settings) -> None:
    """Four appenders, each with its own engine (as several API processes would), at once."""
    logs = [AuditLog(create_db_engine(settings.db_url("audit"), pool_size=2)) for _ in range(4)]
    logs[0].ensure_schema()

    def appends(index: int) -> list[int]:
        return [logs[index].append(action(n, actor=f"op{index}")).sequence for n in range(25)]

    with ThreadPoolExecutor(8) as pool:
        results = [pool.submit(appends, i % 4) for i in range(8)]
        sequences = sorted(s for result in results for s in result.result(60))
    assert sequences == list(range(1, 201))
    verdict = logs[0].verify()
    assert (verdict.count, verdict.broken) == (200, None)
    for log in logs:
        log.engine.dispose()


def test_the_verify_command_says_when_the_database_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    down = Settings(audit_db_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    status, out, err = verified(monkeypatch, capsys, down)
    assert (status, out) == (2, "")
    assert err.startswith("audit-verify: the audit database is unreachable:")


def test_a_rebuild_from_the_command_line_is_recorded_under_the_operators_name(
    settings: Settings, audit: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = settings.model_copy(update={"operator": "alice"})
    monkeypatch.setattr(rebuild, "get_settings", lambda: named)
    for service in ("event_store", "inventory"):  # what the workers would have migrated
        engine = create_db_engine(settings.db_url(service), pool_size=1)
        upgrade(service, engine)
        engine.dispose()
    assert rebuild.main() == 0
    entry = audit.entries()[-1]
    assert (entry.actor_kind, entry.actor, entry.action, entry.resource, entry.outcome) == (
        "system",
        "alice",
        "cli rebuild-projections",
        "/projections",
        "ok",
    )
    assert entry.request_id.startswith("cli-")
    assert audit.verify().broken is None
    unnamed = settings.model_copy(update={"operator": "Alice Smith <alice@example.com>"})
    assert rebuild.who(unnamed) == "(not a name)"
    monkeypatch.setenv("USER", "bob")
    monkeypatch.setenv("LOGNAME", "bob")
    assert rebuild.who(settings) == "bob"  # unset: the OS user


# --- through the API ----------------------------------------------------------------------------

ALICE = mint_operator("alice", AUTH_SECRET)
CUSTOMER = mint("c-42", AUTH_SECRET)


@pytest.fixture
def api_app(settings: Settings, audit: AuditLog) -> object:
    app = real_app(api_settings(require_auth=True, api_max_body_bytes=1024))
    app.state.audit = audit
    return app


async def test_the_api_records_each_state_changing_request_with_its_caller(
    api_app: object, audit: AuditLog
) -> None:
    order = "6f1c0e1a-7b5e-4c3b-9a4e-0c1d2e3f4a5b"
    async with client_of(api_app) as client:  # type: ignore[arg-type]
        refused = await client.post("/projections/rebuild", headers=bearer(CUSTOMER))
        anonymous = await client.post(f"/orders/{order}/compensation/retry")
        # The saga and the projector are out of reach here: an unexpected error, recorded too.
        failed = await client.post("/projections/rebuild", headers=bearer(ALICE))
        static = await client.post("/projections/rebuild", headers=bearer(OPERATOR_TOKEN))
        too_large = await client.post(
            f"/orders/{order}/compensation/resolve",
            headers=bearer(ALICE),
            content=b"x" * 2048,
        )
        odd = await client.post("/orders/ada@example.com/cancel", headers=bearer(CUSTOMER))
        read = await client.get("/audit", headers=bearer(ALICE))
    assert [r.status_code for r in (refused, anonymous, failed, static, too_large, odd)] == [
        403,
        401,
        500,
        500,
        413,
        422,
    ]
    entries = audit.entries()
    assert [(e.actor_kind, e.actor, e.action, e.resource, e.outcome) for e in entries] == [
        ("customer", "c-42", "POST /projections/rebuild", "/projections", "403"),
        (
            "anonymous",
            "anonymous",
            "POST /orders/{order_id}/compensation/retry",
            f"/orders/{order}",
            "401",
        ),
        ("operator", "alice", "POST /projections/rebuild", "/projections", "500"),
        ("operator", "operator", "POST /projections/rebuild", "/projections", "500"),
        # Refused on its declared length before routing: no route, no caller yet.
        ("anonymous", "anonymous", "POST (no route)", None, "413"),
        ("customer", "c-42", "POST /orders/{order_id}/cancel", "/orders/(not an id)", "422"),
    ]
    assert refused.headers["x-request-id"] == entries[0].request_id
    assert len({e.request_id for e in entries}) == len(entries)
    assert read.status_code == 200 and "x-request-id" in read.headers  # reads: not recorded
    assert audit.verify().broken is None and audit.verify().count == len(entries)


async def test_the_log_is_the_operators_alone_filtered_paged_and_exported(
    api_app: object, audit: AuditLog
) -> None:
    for n in range(1, 6):
        audit.append(action(n, actor="bob" if n % 2 else "alice"))
    async with client_of(api_app) as client:  # type: ignore[arg-type]
        assert (await client.get("/audit")).status_code == 401
        customer = await client.get("/audit", headers=bearer(CUSTOMER))
        assert (customer.status_code, customer.json()) == (
            403,
            {"detail": "an operator action: this token is not the operator's"},
        )
        page = (await client.get("/audit?actor=bob&limit=2", headers=bearer(ALICE))).json()
        assert [e["sequence"] for e in page["entries"]] == [1, 3]
        assert page["next_after"] == 3
        last = await client.get("/audit?actor=bob&limit=2&after=3", headers=bearer(ALICE))
        assert [e["sequence"] for e in last.json()["entries"]] == [5]
        assert last.json()["next_after"] is None
        first = page["entries"][0]
        assert set(first) == {
            *("sequence", "occurred_at", "actor_kind", "actor", "action", "resource"),
            *("request_id", "outcome", "prev_hash", "hash"),
        }
        at = first["occurred_at"]
        since = await client.get("/audit", params={"since": at}, headers=bearer(ALICE))
        assert len(since.json()["entries"]) == 5
        until = await client.get("/audit", params={"until": at}, headers=bearer(ALICE))
        assert until.json()["entries"] == []
        for params, field in (
            ({"since": "2026-12-01T10:00:00"}, "since"),  # no time zone
            ({"until": "yesterday"}, "until"),
            ({"actor_kind": "robot"}, "actor_kind"),
            ({"limit": "0"}, "limit"),
            ({"format": "xml"}, "format"),
            ({"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, "until"),
        ):
            bad = await client.get("/audit", params=params, headers=bearer(ALICE))
            assert bad.status_code == 422, params
            assert bad.json()["detail"][0]["loc"] == ["query", field]

        jsonl = await client.get("/audit?format=jsonl&resource=/orders/o-2", headers=bearer(ALICE))
        assert jsonl.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in jsonl.text.splitlines()]
        assert [(e["sequence"], e["actor"]) for e in lines] == [(2, "alice")]

        audit.append(action(6, actor="=cmd|' /C calc'!A0", kind="customer"))
        exported = await client.get("/audit?format=csv&limit=5", headers=bearer(ALICE))
        assert exported.headers["content-type"] == "text/csv; charset=utf-8"
        assert exported.headers["x-next-after"] == "5"
        rows = list(csv.reader(io.StringIO(exported.text)))
        assert rows[0][:3] == ["sequence", "occurred_at", "actor_kind"]
        assert [row[0] for row in rows[1:]] == ["1", "2", "3", "4", "5"]
        last_csv = await client.get("/audit?format=csv&after=5", headers=bearer(ALICE))
        row = list(csv.reader(io.StringIO(last_csv.text)))[1]
        assert row[3] == "'=cmd|' /C calc'!A0"  # shown as text, never run as a formula
