"""Tasks as FHIR R4 Task resources for an EPJ's worklist, the `due` SearchParameter FHIR
lacks, and the CapabilityStatement that lists the searches (issue 30).

A Task names its pathway as the CarePlan it is for (`focus`, `basedOn`: `CarePlan/<workflow
id>`), the patient by pseudonymous reference only, its owner by type (a Practitioner by HPR
number, a unit as a CareTeam, the municipality as an Organization; a claimed unit task is
owned by the person who claimed it, the unit kept in an extension), and its due date as
`restriction.period.end`, where Da Vinci's and others' worklists keep it. `meta.versionId`
is the task's version, which `If-Match` on a claim compares.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.searchparameter import SearchParameter
from fhir.resources.R4B.task import Task

from activities.task_owner import OwnerType, unit_of
from starter.fhir import systems
from starter.fhir.bundle import task_elements
from starter.task_search import FoundTask

TASK_TEAM_EXTENSION = "https://rop-forlop.no/fhir/StructureDefinition/task-team"
"""The unit a claimed task belongs to, while a person of it has claimed it."""
DUE_SEARCH_PARAMETER = "https://rop-forlop.no/fhir/SearchParameter/task-due"


def weak_etag(version: int) -> str:
    """The ETag of a task's version, as `If-Match` sends it back."""
    return f'W/"{version}"'


def owner_reference(owner_type: OwnerType, owner: str) -> dict[str, Any]:
    """A typed reference to a task's owner."""
    if owner_type is OwnerType.PRACTITIONER:
        return {"type": "Practitioner", "identifier": {"system": systems.HPR, "value": owner}}
    display = unit_of(owner) if owner_type is OwnerType.CARE_TEAM else owner
    return {
        "reference": f"{owner_type.value}/{owner}",
        "type": owner_type.value,
        "display": display,
    }


def task_resource(task: FoundTask) -> Task:
    """The task as a FHIR Task, validated."""
    careplan = {"reference": f"CarePlan/{task.workflow_id}", "type": "CarePlan"}
    resource: dict[str, Any] = {
        **task_elements(task),
        "id": str(task.id),
        "meta": {"versionId": str(task.version), "lastUpdated": task.updated_at.isoformat()},
        "basedOn": [careplan],
        "focus": careplan,
        "for": {
            "type": "Patient",
            "identifier": {"system": systems.PATIENT_REFERENCE, "value": task.patient_reference},
        },
        "lastModified": task.updated_at.isoformat(),
        "owner": _owner(task),
    }
    if task.claimed_by is not None and task.owner is not None:
        resource["extension"] = [
            {
                "url": TASK_TEAM_EXTENSION,
                "valueReference": owner_reference(OwnerType.CARE_TEAM, task.owner),
            }
        ]
    return Task.model_validate(resource)


def _owner(task: FoundTask) -> dict[str, Any]:
    if task.claimed_by is not None:
        return owner_reference(OwnerType.PRACTITIONER, task.claimed_by)
    if task.owner_type is not None and task.owner is not None:
        return owner_reference(task.owner_type, task.owner)
    return {"display": task.recipient}


DUE = SearchParameter.model_validate(
    {
        "resourceType": "SearchParameter",
        "id": "task-due",
        "url": DUE_SEARCH_PARAMETER,
        "name": "due",
        "status": "active",
        "description": "When the task is due: Task.restriction.period.end (FHIR R4 has no "
        "search on it). Prefixes eq, lt, le, gt, ge; a day or an instant.",
        "code": "due",
        "base": ["Task"],
        "type": "date",
        "expression": "Task.restriction.period.end",
        "xpath": "f:Task/f:restriction/f:period/f:end",
        "xpathUsage": "normal",
        "comparator": ["eq", "lt", "le", "gt", "ge"],
    }
)

TASK_SEARCHES: list[tuple[str, str, str]] = [
    (
        "owner",
        "reference",
        "Practitioner/<HPR number>, CareTeam/<health trust>.<TSB|PHV> or "
        "Organization/municipality-<number>; owner:identifier=urn:oid:2.16.578.1.12.4.1.4.4|<HPR>",
    ),
    ("status", "token", "requested, in-progress, completed, cancelled (comma: any of them)"),
    ("code", "token", "the task kind (https://rop-forlop.no/fhir/CodeSystem/task-kind)"),
    ("focus", "reference", "CarePlan/<workflow id>: the pathway"),
    ("based-on", "reference", "CarePlan/<workflow id>: the pathway"),
    ("authored-on", "date", "when the task was raised (eq, lt, le, gt, ge)"),
    ("due", "date", "when the task is due (eq, lt, le, gt, ge): the SearchParameter task-due"),
    ("_sort", "special", "_id (default), due, -due, authored-on, -authored-on"),
    ("_count", "number", "tasks a page (1 to 500; 50 by default)"),
]


def capability_statement(base_url: str, software_version: str) -> CapabilityStatement:
    """What this server answers: Task read and search, the AuditEvent search, and the
    SearchParameter `due`."""
    task_parameters = [
        {
            "name": name,
            "type": kind,
            "documentation": documentation,
            **({"definition": DUE_SEARCH_PARAMETER} if name == "due" else {}),
        }
        for name, kind, documentation in TASK_SEARCHES
    ]
    return CapabilityStatement.model_validate(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-12-07",
            "kind": "instance",
            "software": {"name": "rop-forlop", "version": software_version},
            "implementation": {"description": "rop-forlop: the ROP pathway", "url": base_url},
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json"],
            "rest": [
                {
                    "mode": "server",
                    "security": {
                        "description": "Bearer tokens (HelseID or the configured OIDC "
                        "provider); every read scoped by need of service and logged"
                    },
                    "resource": [
                        {
                            "type": "Task",
                            "interaction": [{"code": "read"}, {"code": "search-type"}],
                            "searchParam": task_parameters,
                        },
                        {
                            "type": "AuditEvent",
                            "interaction": [{"code": "search-type"}],
                            "searchParam": [
                                {"name": "patient", "type": "reference"},
                                {"name": "date", "type": "date"},
                            ],
                        },
                        {"type": "SearchParameter", "interaction": [{"code": "read"}]},
                        {
                            "type": "Subscription",
                            "documentation": "Topic https://rop-forlop.no/fhir/"
                            "SubscriptionTopic/task-owner (Subscriptions R5 Backport IG, R4): "
                            "one filter Task?owner=…, rest-hook, id-only or empty content",
                            "interaction": [
                                {"code": "create"},
                                {"code": "read"},
                                {"code": "delete"},
                            ],
                            "operation": [
                                {
                                    "name": "status",
                                    "definition": "http://hl7.org/fhir/uv/subscriptions-backport/"
                                    "OperationDefinition/backport-subscription-status",
                                }
                            ],
                        },
                    ],
                }
            ],
        }
    )
