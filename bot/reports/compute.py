"""Response-time reports for department leads and the quality office: `compute_report`.

Figures per service, and within each service per urgency and per consultant, over a period
``[since, until)`` of consult *creation* time:

* counts: consults, acknowledged, answered, closed, cancelled, escalated, handed off, reopened;
  ``open_now`` / ``open_overdue`` describe the service *now* (every open consult, whatever
  its creation date);
* times in seconds from creation (median and 90th percentile): to acknowledge, to the first
  response, and to the answer. Time to answer is the consultant's time: need-info waiting
  (``waiting_seconds``) is subtracted and reported apart as ``waiting_on_requester``;
* SLA shares (answered / acknowledged within the due time) and answer feedback;
* time held hop by hop (`bot.reports.holders`): the top-level ``holders`` and each
  service's ``queue_seconds``, over the hops that *ended* in the period.

Percentiles interpolate linearly between ranks exactly like PostgreSQL's
``percentile_cont``. The database groups and counts per (service, urgency, assignee) and
returns each group's raw times (`bot.reports.postgres`: binary arrays, a large period over
two connections in one snapshot; `bot.reports.sqlite`: text lists); `bot.reports.vectors`
computes the seconds and percentiles with numpy. Every path gives bit-identical numbers,
also the row-by-row Python aggregation (`bot.reports.queries`) and ``percentile_cont`` in
PostgreSQL (`bot.reports.pg_reference`), which the tests compare with. The period filter
uses ``ix_consults_service_created``.

Nothing here reads or prints patient references, questions or answers: outputs carry
service keys, urgencies, Slack user ids and consult references only.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from bot.domain.catalogue import Catalogue, Service
from bot.domain.vocabulary import URGENCIES
from bot.reports.critical import critical_figures
from bot.reports.days import period_groups_cached
from bot.reports.followups import followup_figures
from bot.reports.holders import holder_report
from bot.reports.model import Figures, Group, GroupKey, Report, ServiceReport, as_utc
from bot.reports.queries import open_groups, period_groups_python
from bot.reports.sqlite import period_groups_sqlite
from bot.reports.transfers import transfer_figures

OpenCounts = dict[GroupKey, tuple[int, int]]


def resolve_services(catalogue: Catalogue, services: Iterable[str] | None) -> list[Service]:
    """The catalogue's services named by `services` (keys or aliases, each once, in the
    order given), or all of them for None; an unknown name raises ValueError."""
    if services is None:
        return list(catalogue.services)
    chosen: list[Service] = []
    for name in services:
        found = catalogue.service(name)
        if found is None:
            valid = ", ".join(s.key for s in catalogue.services)
            raise ValueError(f"unknown service {name!r}; valid services: {valid}")
        if found not in chosen:
            chosen.append(found)
    return chosen


def compute_report(
    session: Session,
    *,
    catalogue: Catalogue,
    since: datetime,
    until: datetime,
    now: datetime,
    services: list[str] | None = None,
    holders: bool = True,
) -> Report:
    """Figures for consults created in ``[since, until)``, per service (catalogue order).

    Every catalogue service is listed, with zeros when it had no consults, unless
    `services` (keys or aliases) narrows the list; an unknown name raises ValueError.
    ``open_now``/``open_overdue`` count the consults open at `now`, whatever their age.
    `Report.as_dict()` is the JSON shape (see the module docstring). `holders` False leaves
    out the time held (`bot.reports.holders`) for callers that do not show it.
    """
    since, until, now = as_utc(since), as_utc(until), as_utc(now)
    if since > until:
        raise ValueError("since must not be after until")
    keys = [s.key for s in resolve_services(catalogue, services)]
    if not keys:
        return Report(since=since, until=until, services=[])
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        groups = period_groups_cached(session, keys, since, until, now)
    elif dialect == "sqlite":
        groups = period_groups_sqlite(session, keys, since, until, now)
    else:
        groups = period_groups_python(session, keys, since, until, now)
    open_now = open_groups(session, keys, now)
    return Report(
        since=since,
        until=until,
        services=[_service(key, groups, open_now) for key in keys],
        critical=critical_figures(session, keys, since, until),
        followups=followup_figures(session, keys, since, until, now, with_none=services is None),
        held=holder_report(session, catalogue=catalogue, services=keys, since=since, until=until)
        if holders
        else None,
        transfers=transfer_figures(session, keys, since, until),
    )


def _service(key: str, groups: dict[GroupKey, Group], open_now: OpenCounts) -> ServiceReport:
    """One service's figures, per urgency and per consultant, from the rolled-up groups."""

    def figures(group: GroupKey) -> Figures:
        return Figures.of(groups.get(group, Group()), *open_now.get(group, (0, 0)))

    users = sorted(
        {k[2] for k in groups if k[0] == key and k[1] == "c"}
        | {k[2] for k in open_now if k[0] == key and k[1] == "c"}
    )
    return ServiceReport(
        service=key,
        figures=figures((key, "", "")),
        by_urgency={u: figures((key, "u", u)) for u in _urgencies(key, groups, open_now)},
        by_consultant={user: figures((key, "c", user)) for user in users},
    )


def _urgencies(key: str, groups: dict[GroupKey, Group], open_now: OpenCounts) -> list[str]:
    """The catalogue's urgencies in order, then any other found in the data."""
    extra = sorted(
        {k[2] for k in (*groups, *open_now) if k[0] == key and k[1] == "u"} - set(URGENCIES)
    )
    return [*URGENCIES, *extra]
