"""Accepted findings (``security.ignore``): each with a reason and an expiry date.

An ignore hides its finding from the verdict until it expires; the finding is still listed
(``ignored`` in ``--json``, a suppressed result in SARIF), never dropped. From its expiry on
the finding counts again and the audit says which ignore expired, as audit-ci does with its
``expiry``: a date means 00:00 UTC of that day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time

from travellr_ops.ops.security.osv import Finding, key
from travellr_ops.settings import AuditIgnore


@dataclass(frozen=True)
class Ignored:
    """A finding that an ignore in force hides from the verdict."""

    finding: Finding
    reason: str
    expires: datetime


@dataclass(frozen=True)
class IgnoreUse:
    """One configured ignore, whether it is still in force, and how many findings it hid
    (or, expired, would have hidden)."""

    id: str
    package: str | None
    reason: str
    expires: datetime
    expired: bool
    matched: int


def expiry(rule: AuditIgnore) -> datetime:
    value = rule.expires
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value, time(0), UTC)


def covers(rule: AuditIgnore, finding: Finding) -> bool:
    ids = {finding.advisory.upper(), *(a.upper() for a in finding.aliases)}
    if rule.id.upper() not in ids:
        return False
    return rule.package is None or key(finding.ecosystem, rule.package.lower()) == key(
        finding.ecosystem, finding.package.lower()
    )


def apply(
    findings: list[Finding], rules: list[AuditIgnore], now: datetime
) -> tuple[list[Finding], list[Ignored], list[IgnoreUse]]:
    """(findings that count, findings hidden by an ignore in force, every ignore's use)."""
    counting: list[Finding] = []
    hidden: list[Ignored] = []
    matched = [0] * len(rules)
    for finding in findings:
        covering = [i for i, r in enumerate(rules) if covers(r, finding)]
        for i in covering:
            matched[i] += 1
        in_force = [rules[i] for i in covering if expiry(rules[i]) > now]
        if in_force:
            rule = in_force[0]
            hidden.append(Ignored(finding, rule.reason, expiry(rule)))
        else:
            counting.append(finding)
    uses = [
        IgnoreUse(r.id, r.package, r.reason, expiry(r), expiry(r) <= now, matched[i])
        for i, r in enumerate(rules)
    ]
    return counting, hidden, uses
