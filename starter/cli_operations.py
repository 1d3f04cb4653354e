"""`rop` commands for operators and clinicians around the pathways: tasks, indicators,
the calendar, the directory, the schema, the codec server and the local stack."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
from datetime import date, datetime, time, timedelta
from pathlib import Path

from rop_domain import calendar
from rop_domain.calendar import OSLO
from rop_runtime.settings import RopSettings
from starter.cli_support import UsageError, connect_pathways, require_database


async def indicators(args: argparse.Namespace, settings: RopSettings) -> None:
    import asyncpg

    from starter import access_log
    from starter.access_log import Access
    from starter.indicators import (
        IndicatorQuery,
        Period,
        SeriesPoint,
        check_breakdown_period,
        compute_indicators,
        compute_series,
        read_action,
        render_table,
        series_csv,
    )

    query = IndicatorQuery.model_validate(
        {
            "from_date": args.from_date,
            "to_date": args.to_date,
            "health_trust": args.health_trust,
            "municipality": args.municipality,
        }
    )
    if args.json and args.csv:
        raise UsageError("give --json or --csv, not both")
    today = datetime.now(OSLO).date()
    try:
        check_breakdown_period(query, today)
    except ValueError as error:
        raise UsageError(f"--from: {error}") from None
    small = settings.indicator_small_cell
    connection = await asyncpg.connect(require_database(settings))
    try:
        if args.by is not None:
            series = await compute_series(
                connection, query, Period(args.by), today, small_cell=small
            )
        else:
            whole = await compute_indicators(connection, query, small_cell=small)
        await access_log.record(
            connection,
            [
                Access(
                    principal=f"cli:{getpass.getuser()}",
                    roles="operator",
                    workflow_id=access_log.NO_PATHWAY,
                    action=read_action(query),
                    outcome=access_log.Outcome.OK,
                )
            ],
        )
    finally:
        await connection.close()
    if args.by is None:
        if args.csv:
            print(series_csv([SeriesPoint(period="all", indicators=whole)]), end="")
        else:
            print(whole.model_dump_json(indent=2) if args.json else render_table(whole))
    elif args.csv:
        print(series_csv(series), end="")
    elif args.json:
        print(json.dumps([p.model_dump(mode="json") for p in series], indent=2))
    else:
        print("\n\n".join(f"== {p.period}\n{render_table(p.indicators)}" for p in series))


MAX_WORKING_DAYS = 260
"""A year of working days: the most `rop calendar deadline` counts."""


def received_day(given: str) -> date:
    """The day of receipt from `--received`: a date, or an instant with its zone, taken as
    the pathway takes it (its date in Norway: 22:30 UTC on 31 March is 1 April in Oslo)."""
    try:
        if "T" not in given:
            return date.fromisoformat(given)
        instant = datetime.fromisoformat(given)
    except ValueError:
        raise UsageError(
            f"--received {given!r}: write a date as YYYY-MM-DD, or an instant with its zone "
            "(2026-03-31T22:30:00Z)"
        ) from None
    if instant.tzinfo is None:
        raise UsageError(
            f"--received {given!r}: give the instant's zone (Z or +01:00): the day of receipt "
            "is its date in Norway"
        )
    return calendar.local_date(instant)


async def deadline(args: argparse.Namespace, settings: RopSettings) -> None:
    received = received_day(args.received)
    working_days = settings.meeting_working_days if args.working_days is None else args.working_days
    if not 1 <= working_days <= MAX_WORKING_DAYS:
        raise UsageError(f"--working-days must be from 1 to {MAX_WORKING_DAYS}")
    count_saturdays = args.count_saturdays or settings.count_saturdays
    rule = (
        calendar.WorkingDayRule.MONDAY_TO_SATURDAY
        if count_saturdays
        else calendar.WorkingDayRule.MONDAY_TO_FRIDAY
    )
    try:
        deadline = calendar.add_working_days(received, working_days, rule)
    except ValueError:  # a day outside the holiday calendar's years
        raise UsageError(
            f"--received {received.isoformat()}: the count runs outside the holiday calendar "
            f"({calendar.FIRST_YEAR}-{calendar.LAST_YEAR})"
        ) from None
    print(f"received {received.isoformat()}, {working_days} working days ({rule.value}):")
    print(deadline.isoformat())


async def tasks(args: argparse.Namespace, settings: RopSettings) -> None:
    import asyncpg

    from starter.task_list import TaskFilter, list_tasks

    trust, _, unit = (args.unit or "").partition(":")
    connection = await asyncpg.connect(require_database(settings))
    try:
        rows = await list_tasks(
            connection,
            TaskFilter(
                workflow_id=args.workflow_id,
                assignee=args.assignee,
                health_trust=trust or None,
                receiving_unit=unit or None,
                overdue=args.overdue,
                include_closed=args.all,
                delivery_failed=args.failed,
            ),
        )
    finally:
        await connection.close()
    if not rows:
        print(_no_tasks(args))
    for task in rows:
        due = task.due_at.astimezone(calendar.OSLO).isoformat() if task.due_at else "-"
        print(
            f"{task.id:>5}  {task.workflow_id}  {task.kind.value:<30} {task.status:<10} "
            f"due {due}  to {task.recipient}: {task.subject}"
        )


def _no_tasks(args: argparse.Namespace) -> str:
    """What an empty task list means, in the words of the filters given."""
    which = ("overdue " if args.overdue else "") + ("task" if args.all else "open task")
    scope = [
        f"of {args.workflow_id}" if args.workflow_id else "",
        f"for {args.assignee}" if args.assignee else "",
        f"in {args.unit}" if args.unit else "",
        "that no channel could deliver" if args.failed else "",
    ]
    return " ".join(["no", which, *[part for part in scope if part]])


async def resend(args: argparse.Namespace, settings: RopSettings) -> None:
    import asyncpg

    from starter.pathway_rows import task_of

    connection = await asyncpg.connect(require_database(settings))
    try:
        task = await task_of(connection, args.task_id)
    finally:
        await connection.close()
    if task is None:
        raise UsageError(f"no task {args.task_id}")
    workflow_id, key = task
    pathways = await connect_pathways(settings)
    await pathways.resend_notification(workflow_id, key)
    print(f"task {args.task_id} of {workflow_id} is being delivered again")


async def load_contacts(args: argparse.Namespace, settings: RopSettings) -> None:
    from activities.contact_directory import load_directory
    from activities.database import create_pool, migrate

    path = Path(args.file)
    pool = await create_pool(require_database(settings))
    try:
        await migrate(pool)
        loaded = await load_directory(pool, path)
        print(
            f"{loaded.contact_points} contact points, {loaded.fact_teams} FACT teams and "
            f"{loaded.cooperation_arenas} cooperation arenas loaded"
        )
    finally:
        await pool.close()


async def migrate(args: argparse.Namespace, settings: RopSettings) -> None:
    import asyncpg

    from activities.database import create_pool, migrate

    pool = await create_pool(require_database(settings))
    try:
        applied = await migrate(pool)
    except asyncpg.InsufficientPrivilegeError as error:
        raise UsageError(
            f"this login may not migrate ({error.__class__.__name__}): run `rop db migrate` as the "
            "schema owner, a login that may create tables and roles (deploy/README)"
        ) from None
    finally:
        await pool.close()
    print("applied: " + ", ".join(applied) if applied else "database is up to date")


async def service_login(args: argparse.Namespace, settings: RopSettings) -> None:
    """`rop db login ROLE=ENV_FILE ...`, run with the schema owner's DATABASE_URL after
    `rop db migrate` (which creates the roles). Everything is read before anything is done."""
    from activities.database import SERVICE_ROLES, create_pool, grant_service_login

    wanted = []
    for pair in args.logins:
        role, equals, file = str(pair).partition("=")
        if not equals or role not in SERVICE_ROLES:
            raise UsageError(f"{pair!r}: give ROLE=ENV_FILE with ROLE one of {SERVICE_ROLES}")
        wanted.append((role, *login_of_env_file(Path(file))))
    pool = await create_pool(require_database(settings))
    try:
        for role, login, password in wanted:
            created = await grant_service_login(pool, login, password, role)
            print(f"{'created' if created else 'updated'} login {login} (member of {role})")
    finally:
        await pool.close()


def login_of_env_file(path: Path) -> tuple[str, str]:
    """The login and password of the DATABASE_URL an env file (`KEY=value` lines) sets."""
    from urllib.parse import unquote, urlsplit

    values = dict(
        line.split("=", 1)
        for line in path.read_text(encoding="utf-8").splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    )
    url = values.get("DATABASE_URL", "").strip().strip("'\"")
    if not url:
        raise UsageError(f"{path}: no DATABASE_URL= line")
    try:
        parts = urlsplit(url)
        login, password = parts.username, parts.password
    except ValueError as error:
        raise UsageError(f"{path}: DATABASE_URL is not a URL ({error})") from None
    if not login or not password:
        raise UsageError(f"{path}: DATABASE_URL names no login with a password")
    return unquote(login), unquote(password)


async def _require_current_schema(database_url: str, role: str) -> None:
    """Stop with one line, before serving, if the schema is behind this code."""
    from activities.database import MigrationsPending, open_records

    try:
        pool = await open_records(database_url, role, migrate_first=False)
    except MigrationsPending as error:
        raise UsageError(str(error)) from None
    await pool.close()


async def codec_server(args: argparse.Namespace, settings: RopSettings) -> None:
    from activities.database import API_ROLE, MigrationsPending, open_records
    from rop_runtime.client import codec_from_settings
    from rop_runtime.stopping import stop_on_signals
    from starter.codec_server import NotLoopback, door_from_settings, start_codec_server

    database_url = require_database(settings)
    try:
        pool = await open_records(database_url, API_ROLE, migrate_first=settings.migrate_on_start)
    except MigrationsPending as error:
        raise UsageError(str(error)) from None
    try:
        try:
            door = door_from_settings(settings, pool)
        except ValueError as error:
            raise UsageError(str(error)) from None
        try:
            runner = await start_codec_server(
                codec_from_settings(settings),
                door,
                ui_origin=settings.ui_origin,
                host=args.host,
                port=args.port or settings.codec_server_port,
            )
        except NotLoopback as error:
            raise UsageError(str(error)) from None
        stop = asyncio.Event()
        stop_on_signals(stop)  # SIGTERM: a graceful stop, also as a container's PID 1
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
    finally:
        await pool.close()


async def stack(args: argparse.Namespace, settings: RopSettings) -> None:
    from starter.local_nhn import LocalNhnError, require_doubles
    from starter.stack import run_stack

    try:
        if args.local_nhn:
            require_doubles(Path(args.local_nhn))
        await run_stack(
            settings,
            demo_referral=Path(args.demo),
            contacts=Path(args.contacts),
            local_nhn=Path(args.local_nhn) if args.local_nhn else None,
        )
    except LocalNhnError as error:
        raise UsageError(str(error)) from None


async def api(args: argparse.Namespace, settings: RopSettings) -> None:
    from pydantic import ValidationError

    from starter.api.server import authenticator_from_settings, serve

    try:
        authenticator_from_settings(settings)
    except ValidationError:
        raise  # a malformed tokens file: the CLI names the field
    except ValueError as error:  # e.g. no way in configured
        raise UsageError(str(error)) from None
    from activities.database import API_ROLE

    database_url = require_database(settings)
    if not settings.migrate_on_start:
        await _require_current_schema(database_url, API_ROLE)
    from rop_runtime.client import TemporalConfigError
    from rop_runtime.tracing import TracingConfigError

    try:
        await serve(
            settings,
            database_url,
            host=args.host or settings.api_host,
            port=args.port or settings.api_port,
        )
    except (TracingConfigError, TemporalConfigError) as error:
        raise UsageError(str(error)) from None


VERIFY = "verify"
"""`rop access-log verify` checks the whole log (no workflow id is `verify`: they start `rop-`)."""
EXPORT = "export"
"""`rop access-log export --fhir --patient…` writes a patient's accesses as AuditEvents."""


async def export_audit_events(args: argparse.Namespace, settings: RopSettings) -> None:
    """`rop access-log export --fhir`: what `GET /fhir/AuditEvent` gives the privacy officer,
    for a patient named by reference or by fødselsnummer; the export is itself an access."""
    import getpass

    import asyncpg

    from starter import access_log, audit_search
    from starter.access_log import Access
    from starter.fhir.audit_event import searchset

    if not args.fhir:
        raise UsageError("export writes FHIR AuditEvents: give --fhir")
    if (args.patient is None) == (args.patient_identifier is None):
        raise UsageError("export: give one of --patient and --patient-identifier")
    try:
        patient = (
            audit_search.PatientQuery.by_reference(args.patient)
            if args.patient is not None
            else audit_search.PatientQuery.by_identifier(args.patient_identifier)
        )
    except ValueError as error:
        raise UsageError(f"--patient-identifier: {error}") from None
    since = datetime.combine(args.since, time(), tzinfo=OSLO) if args.since else None
    until = (
        datetime.combine(args.until + timedelta(days=1), time(), tzinfo=OSLO)
        if args.until
        else None
    )
    connection = await asyncpg.connect(require_database(settings))
    try:
        pathways, events = await audit_search.audit_events(connection, patient, since, until)
        await access_log.record(
            connection,
            [
                Access(
                    principal=f"cli:{getpass.getuser()}",
                    roles="privacy-officer",
                    workflow_id=workflow_id,
                    action="read audit events",
                    outcome=access_log.Outcome.OK,
                )
                for workflow_id in pathways
            ],
        )
    finally:
        await connection.close()
    print(json.dumps(searchset(events), indent=2, ensure_ascii=False))


async def show_access_log(args: argparse.Namespace, settings: RopSettings) -> None:
    if args.workflow_id == EXPORT:
        await export_audit_events(args, settings)
        return
    if args.patient or args.patient_identifier or args.until:
        raise UsageError("--patient, --patient-identifier and --until go with `export`")
    import asyncpg

    from starter import access_log, pathway_rows
    from starter.fhir.audit_event import audit_event, searchset

    if args.break_glass == (args.workflow_id is not None):
        raise UsageError("give a workflow id, `verify`, or --break-glass")
    if args.since is not None and not args.break_glass:
        raise UsageError("--since goes with --break-glass or export")
    if args.fhir and (args.break_glass or args.workflow_id in (None, VERIFY)):
        raise UsageError("--fhir goes with a pathway's workflow id or export")
    connection = await asyncpg.connect(require_database(settings))
    try:
        if args.break_glass:
            since = args.since or (datetime.now(OSLO).date() - timedelta(days=30))
            records = await access_log.broken_glass(
                connection, datetime.combine(since, time(), tzinfo=OSLO)
            )
        elif args.workflow_id == VERIFY:
            rows, problems = await access_log.verify_chain(connection)
        else:
            records = await access_log.for_pathway(connection, args.workflow_id)
            patient = await pathway_rows.patient_reference(connection, args.workflow_id)
    finally:
        await connection.close()
    if args.fhir:
        events = [audit_event(record, patient or "unknown") for record in records]
        print(json.dumps(searchset(events), indent=2, ensure_ascii=False))
        return
    if args.workflow_id == VERIFY:
        if problems:
            raise UsageError("the access log's hash chain is broken: " + "; ".join(problems))
        print(f"access log intact: {rows} rows, each chained to the one before")
        return
    if args.json:
        print("\n".join(record.model_dump_json() for record in records))
    elif not records:
        print(
            "no access by breaking the glass is recorded"
            if args.break_glass
            else f"no access to {args.workflow_id} is recorded (is the workflow id right?)"
        )
    else:
        print(access_log.render(records))


async def reconcile(args: argparse.Namespace, settings: RopSettings) -> None:
    import getpass

    from activities.database import create_pool
    from activities.reconcile import reconcile
    from rop_domain.reconcile import ReconcileRequest
    from starter import access_log
    from starter.access_log import Access
    from starter.cli_support import connect_client

    client = await connect_client(settings)
    principal = f"cli:{getpass.getuser()}"
    request = ReconcileRequest(
        pathway=args.pathway,
        since=args.since,
        repair=args.repair,
        restart=args.restart,
        requested_by=principal,
        task_queue=settings.task_queue,
    )
    pool = await create_pool(require_database(settings))
    try:
        report = await reconcile(client, pool, request)
        what = " and ".join(
            [
                "reconcile",
                *(["repair"] if args.repair else []),
                *(["restart"] if args.restart else []),
            ]
        )
        await access_log.record(
            pool,
            [
                Access(
                    principal=principal,
                    roles="operator",
                    workflow_id=args.pathway or access_log.NO_PATHWAY,
                    action=f"{what} ({report.checked} pathways, since {args.since or '…'})",
                    outcome=access_log.Outcome.OK,
                )
            ],
        )
    finally:
        await pool.close()
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print("\n".join(report.lines()))
    if report.behind and not args.repair:
        raise UsageError(
            "the record is behind its workflows: `rop reconcile --repair` writes what it lacks"
        )
    if report.unanswered:
        raise UsageError("some pathways did not answer: is a worker running?")
    if report.still_without_workflow():
        raise UsageError(
            "some open pathways have no workflow in Temporal: `rop reconcile --restart` starts "
            "them again from their record"
            if not args.restart
            else "some pathways could not be restarted (see above)"
        )
