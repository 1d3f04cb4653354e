"""`rop`: the command-line face of rop-forlop.

Every command validates its input at the edge and prints one clear line on error
(exit code 1), so nothing half-valid reaches a pathway. The commands call the same
`starter.pathways.Pathways` API a backend service would import.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rop_runtime.codec import KeyConfigurationError
from rop_runtime.settings import RopSettings
from rop_runtime.validation import one_line
from starter import cli_operations as operations
from starter import cli_steps as steps
from starter.cli_support import OneLineParser, UsageError
from starter.pathways import PathwayDidNotAnswer, PathwayError

Command = Callable[[argparse.Namespace, RopSettings], Awaitable[None]]


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `rop` console script."""
    args = build_parser().parse_args(argv)
    if args.command_name == "worker":
        from worker import main as worker_main

        worker_main()
        return
    code = _run(args)
    if args.command_name in ("stack", "api"):
        raise SystemExit(code)
    # A short-lived Temporal client process can abort in interpreter teardown while the
    # SDK's Rust threads still hold the GIL (temporalio/sdk-python#300). The command's
    # work is done and its output written: flush and leave without that teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run(args: argparse.Namespace) -> int:
    """Run one command; return the exit code, having printed any error as one line."""
    try:
        settings = RopSettings()
        from rop_runtime.logs import configure_logging

        configure_logging(settings.log_format)
        asyncio.run(args.handler(args, settings))
    except ValidationError as error:
        return _fail(f"invalid {_model_name(error)}: {one_line(error)}")
    except PathwayDidNotAnswer as error:
        key = getattr(args, "idempotency_key", None)
        if key is None:  # `rop task complete`: the step's own command made its key
            return _fail(str(error))
        first, _, _ = str(error).partition(";")
        return _fail(
            f"{first}; the step may still be applied: run the command again with "
            f"--idempotency-key {key} (a step is applied once per key), "
            f"or see `rop status {args.workflow_id}`"
        )
    except (PathwayError, UsageError, KeyConfigurationError, OSError) as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        problem = _database_problem(error, os.environ.get("DATABASE_URL"))
        if problem is None:
            raise
        return _fail(problem)
    return 0


def _database_problem(error: Exception, database_url: str | None) -> str | None:
    """One line for a database that refused the login or a DATABASE_URL asyncpg cannot read
    (commands that connect without a pool); None for any other error."""
    import asyncpg

    from activities.database import database_unavailable

    if isinstance(error, asyncpg.ClientConfigurationError):
        return f"DATABASE_URL is not a PostgreSQL URL: {error}"
    if isinstance(
        error, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidCatalogNameError
    ):
        return str(database_unavailable(error, database_url or ""))
    return None


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _model_name(error: ValidationError) -> str:
    if error.title.startswith("list[") and "Measure" in error.title:
        return "measures file"  # its title names the validators, e.g. list[function-after[...]]
    return {
        "Referral": "referral",
        "Assessment": "assessment",
        "MeetingInvite": "meeting invite",
        "MeetingOutcome": "meeting record",
        "CrisisPlan": "crisis plan",
    }.get(error.title, error.title)


# --- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="rop", description="Run the ROP patient pathway.")
    commands = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")

    def command(name: str, handler: Command, help_text: str, parent: Any = commands) -> Any:
        sub = parent.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    referral = commands.add_parser("referral", help="referrals").add_subparsers(
        dest="referral_command", required=True, metavar="COMMAND"
    )
    submit = command(
        "submit", steps.submit, "submit a referral (JSON file); prints the workflow id", referral
    )
    submit.add_argument("file")

    steps.add_step_commands(commands)

    indicators = command(
        "indicators", operations.indicators, "the region's indicators from the records"
    )
    indicators.add_argument("--from", dest="from_date", help="referrals received on or after")
    indicators.add_argument("--to", dest="to_date", help="referrals received on or before")
    indicators.add_argument("--health-trust")
    indicators.add_argument("--municipality", help="kommunenummer, e.g. 4601")
    indicators.add_argument(
        "--by", choices=["month", "quarter"], help="a time series (default: the last 12 months)"
    )
    indicators.add_argument("--json", action="store_true")
    indicators.add_argument("--csv", action="store_true", help="CSV: a row per period")

    status = command("status", steps.status, "show a pathway's phase, deadline, done and due")
    status.add_argument("workflow_id")

    tasks = command("tasks", operations.tasks, "list open tasks (all, or one pathway's)")
    tasks.add_argument("workflow_id", nargs="?")
    tasks.add_argument("--assignee", help="the person or unit id a task is for")
    tasks.add_argument("--unit", help="health trust, or TRUST:UNIT (e.g. helse-bergen:TSB)")
    tasks.add_argument("--overdue", action="store_true", help="only tasks past their due time")
    tasks.add_argument(
        "--failed",
        action="store_true",
        help="only tasks no channel could deliver (re-send: rop notification resend ID)",
    )
    tasks.add_argument("--all", action="store_true", help="also completed and cancelled tasks")

    task = commands.add_parser("task", help="one task").add_subparsers(
        dest="task_command", required=True, metavar="COMMAND"
    )
    complete = command(
        "complete",
        steps.complete_task,
        "complete a task; a step's task takes that step's options (see `rop assess --help`...)",
        task,
    )
    complete.add_argument("task_id", type=int)
    complete.add_argument("step_arguments", nargs=argparse.REMAINDER)

    notification = commands.add_parser("notification", help="task delivery").add_subparsers(
        dest="notification_command", required=True, metavar="COMMAND"
    )
    resend = command("resend", operations.resend, "deliver a failed task again", notification)
    resend.add_argument("task_id", type=int)

    cal = commands.add_parser("calendar", help="working-day calendar").add_subparsers(
        dest="calendar_command", required=True, metavar="COMMAND"
    )
    deadline = command(
        "deadline", operations.deadline, "the meeting deadline for a receipt date", cal
    )
    deadline.add_argument(
        "--received",
        required=True,
        help="YYYY-MM-DD, or an instant with its zone (its date in Norway counts)",
    )
    deadline.add_argument(
        "--working-days", type=int, help="default: ROP_MEETING_WORKING_DAYS or 10"
    )
    deadline.add_argument("--count-saturdays", action="store_true")

    contacts = commands.add_parser("contacts", help="contact directory").add_subparsers(
        dest="contacts_command", required=True, metavar="COMMAND"
    )
    load = command(
        "load", operations.load_contacts, "load contact points from a JSON file", contacts
    )
    load.add_argument("file")

    db = commands.add_parser("db", help="database").add_subparsers(
        dest="db_command", required=True, metavar="COMMAND"
    )
    command("migrate", operations.migrate, "apply pending migrations", db)
    login = command(
        "login",
        operations.service_login,
        "as the schema owner: create (or update) a service's login, a member of its role only",
        db,
    )
    login.add_argument(
        "logins",
        nargs="+",
        metavar="ROLE=ENV_FILE",
        help="rop_worker or rop_api, and the service's env file, whose DATABASE_URL names "
        "the login and its password",
    )

    commands.add_parser("worker", help="run the worker (needs DATABASE_URL)")

    api = command("api", operations.api, "serve the HTTP API (needs DATABASE_URL)")
    api.add_argument("--host", help="default ROP_API_HOST or 127.0.0.1")
    api.add_argument("--port", type=int, help="default ROP_API_PORT or 8000")

    access = command(
        "access-log", operations.show_access_log, "who read or changed a pathway, and when"
    )
    access.add_argument(
        "workflow_id",
        nargs="?",
        help="a pathway's workflow id, `verify` to check the log's hash chain, or `export` "
        "(with --fhir and --patient or --patient-identifier) for a patient's AuditEvents",
    )
    access.add_argument(
        "--break-glass",
        action="store_true",
        help="list every access made by breaking the glass, for follow-up",
    )
    access.add_argument(
        "--since",
        type=date.fromisoformat,
        help="with --break-glass or export: from this date (YYYY-MM-DD, Oslo); "
        "--break-glass's default is 30 days back",
    )
    access.add_argument(
        "--until",
        type=date.fromisoformat,
        help="with export: to this date, inclusive (YYYY-MM-DD, Oslo)",
    )
    access.add_argument("--patient", help="with export: the patient's pseudonymous reference")
    access.add_argument(
        "--patient-identifier",
        metavar="SYSTEM|NUMBER",
        help="with export: urn:oid:2.16.578.1.12.4.1.4.1|<fødselsnummer> (4.2: D-number)",
    )
    access.add_argument("--json", action="store_true")
    access.add_argument(
        "--fhir",
        action="store_true",
        help="as a FHIR Bundle of AuditEvents (HL7 Norway's guide): a pathway's accesses, "
        "or with export a patient's",
    )

    reconcile = command(
        "reconcile",
        operations.reconcile,
        "compare each pathway's record with what its workflow applied (after a restore)",
    )
    reconcile.add_argument("--pathway", help="one pathway's workflow id")
    reconcile.add_argument(
        "--since",
        type=date.fromisoformat,
        help="only pathways running, or closed since this date (the backup's; YYYY-MM-DD)",
    )
    reconcile.add_argument(
        "--repair",
        action="store_true",
        help="write what the record lacks, from the workflows (never deletes)",
    )
    reconcile.add_argument(
        "--restart",
        action="store_true",
        help="start each open pathway Temporal does not know again from its record",
    )
    reconcile.add_argument("--json", action="store_true")

    codec = command(
        "codec-server", operations.codec_server, "decode payloads for the Temporal UI and CLI"
    )
    codec.add_argument("--host", default="127.0.0.1")
    codec.add_argument("--port", type=int, help="default ROP_CODEC_SERVER_PORT or 8234")

    stack = command("stack", operations.stack, "run the local stack with a demo pathway (make run)")
    stack.add_argument("--demo", default=str(_seed("demo-referral.example.json")))
    stack.add_argument("--contacts", default=str(_seed("contact-points.example.json")))
    stack.add_argument(
        "--local-nhn",
        metavar="SOURCE_TREE",
        help="also run the local HelseID and Meldingstjener of SOURCE_TREE/nhn_local "
        "(make run passes .): the demo's GP and municipality get Dialogmelding",
    )
    return parser


def _seed(name: str) -> Path:
    return Path(__file__).resolve().parent.parent / "deploy" / "seed" / name


if __name__ == "__main__":
    main()
