"""The chaos run's report: a plain-text table of what was done to the stack and what held."""

from __future__ import annotations

from chaos.run import Report


def _counts(counts: dict, empty: str = "none") -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=str)) or empty


def render(report: Report) -> str:
    o = report.options
    topology = "split (one worker per service)" if o.split else "single worker"
    databases = "PostgreSQL" if o.postgres else "SQLite"
    outage = f"{report.outage[0]} {report.outage[1]:.1f}s" if report.outage else "none"
    facts = [
        (
            "run",
            f"{o.orders} orders at concurrency {o.concurrency}, {o.returns} returns, seed {o.seed}",
        ),
        ("stack", f"file-backed dev server, {topology}, {databases} service databases"),
        ("load / settle", f"{report.load_seconds:.1f}s / {report.settle_seconds:.1f}s"),
        ("orders by outcome", _counts(report.outcomes)),
        ("customer cancels", _counts(report.cancels)),
        ("payment reviews", _counts(report.reviews)),
        ("SIGKILLs per process", _counts(report.kills)),
        ("SIGKILL exit statuses", _counts(report.kill_statuses)),
        ("temporal restarts", f"{report.temporal_restarts} (after {o.temporal_down:g}s dead)"),
        ("db outage", outage),
        ("returns by outcome", _counts(report.returns)),
        ("inspections", _counts(report.inspections)),
        ("return consumers killed mid-chain", str(report.kills_mid_return)),
        (
            "event store outage",
            f"{report.event_store_outage:.1f}s, {report.returns_during_outage} returns running"
            if report.event_store_outage is not None
            else "none",
        ),
        (
            "client retries (503, drop)",
            f"{sum(report.retries.values())} ({_counts(report.retries)})",
        ),
        ("exit on SIGTERM", _counts(report.exit_statuses)),
    ]
    width = max(len(k) for k, _ in facts)
    lines = [f"{k:<{width}}  {v}" for k, v in facts]
    lines.append("")
    name_width = max(len(c.name) for c in report.checks)
    lines.append(f"{'check':<{name_width}}  result  counted")
    lines.append(f"{'-' * name_width}  ------  -------")
    for check in report.checks:
        verdict = "PASS" if check.passed else f"FAIL {len(check.violations)}"
        lines.append(f"{check.name:<{name_width}}  {verdict:<6}  {check.counted}")
    lines += ["", "faults:"] + [f"  {entry}" for entry in report.fault_log]
    violations = report.violations
    if violations:
        lines += ["", f"{len(violations)} violation(s):"]
        lines += [f"  {v}" for v in violations[:50]]
    if report.kept is not None:
        lines += ["", f"state and logs kept in {report.kept}"]
    lines += ["", "VERDICT: " + ("PASS" if not violations else "FAIL")]
    return "\n".join(lines)
