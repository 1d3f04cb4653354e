"""Reading a referral out of a FHIR R4 ServiceRequest, and verifying JWTs by a fixed key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rop_domain.models import PathwayReason, ReceivingUnit, ReferralSource, ValidationPolicy
from starter.api.auth import AuthenticationFailed, JwtSettings, JwtVerifier, Role
from starter.fhir.service_request import FhirMappingError, referral_from_service_request

EXAMPLE = (
    Path(__file__).resolve().parent.parent / "deploy" / "seed" / "service-request.example.json"
)
LENIENT = ValidationPolicy(allow_synthetic_ids=True)


def _example() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return data


def _problems(data: dict[str, Any], policy: ValidationPolicy = LENIENT) -> dict[str, str]:
    with pytest.raises(FhirMappingError) as caught:
        referral_from_service_request(data, policy)
    return dict(caught.value.problems)


def test_the_example_maps_to_every_referral_field() -> None:
    referral = referral_from_service_request(EXAMPLE.read_bytes(), LENIENT)
    assert referral.referral_id == "FHIR-EX-0001"
    assert referral.source is ReferralSource.FASTLEGE
    assert referral.referrer == "9000001"
    assert referral.receiving_unit is ReceivingUnit.TSB
    assert referral.health_trust == "helse-bergen"
    assert referral.responsible_clinician == "9000123"
    assert referral.municipality == "4601"
    assert referral.general_practitioner == "9000001"
    assert referral.patient.reference == "fhir-example-patient-1"
    assert referral.patient.national_id == "01819012365"
    assert referral.patient.name == "Syntetisk Testesen"
    assert referral.received_at.isoformat() == "2026-11-23T09:15:00+01:00"
    assert referral.pathway_reason is PathwayReason.COOPERATION_NOT_WORKING
    assert referral.birth_year == 1990


def test_the_municipality_is_read_from_no_basis_district_and_the_older_placement() -> None:
    """HL7 Norway's no-basis puts the kommunenummer on Address.district (the example does);
    senders before it put the extension on the Address itself."""
    data = _example()
    [address] = data["contained"][0]["address"]
    assert address["_district"]["extension"][0]["valueCoding"]["system"].endswith(".3402")
    older = {
        "city": "Askøy",
        "extension": [
            {
                "url": "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode",
                "valueCoding": {"system": "urn:oid:2.16.578.1.12.4.1.1.3402", "code": "4627"},
            }
        ],
    }
    data["contained"][0]["address"] = [older]
    assert referral_from_service_request(data, LENIENT).municipality == "4627"


def test_missing_parts_are_named_by_their_fhir_path() -> None:
    data = _example()
    del data["performer"]
    del data["category"]
    data["contained"][0]["address"] = []
    problems = _problems(data)
    assert set(problems) == {"performer", "category", "subject.address.extension"}
    assert "HPR" in problems["performer"] or "health-trust" in problems["performer"]


def test_an_invalid_resource_and_a_draft_are_refused() -> None:
    data = _example() | {"intent": 12}
    assert "intent" in _problems(data)
    draft = _example() | {"status": "draft"}
    assert _problems(draft) == {"status": "only an active ServiceRequest is a referral"}


def test_the_edge_policy_applies_to_the_patient_identifier() -> None:
    problems = _problems(_example(), ValidationPolicy(allow_synthetic_ids=False))
    assert list(problems) == ["subject.identifier"]
    assert "synthetic" in problems["subject.identifier"]


def test_without_authored_on_the_referral_is_received_now() -> None:
    data = _example()
    del data["authoredOn"]
    before = time.time()
    referral = referral_from_service_request(data, LENIENT)
    assert referral.received_at.timestamp() >= before - 1


def _hs256(claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 JWT made by hand (PyJWT refuses to use a PEM key as an HMAC secret)."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(json.dumps(claims).encode())
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()


def _keys() -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, pem.decode()


async def test_a_jwt_verified_by_a_configured_public_key() -> None:
    key, pem = _keys()
    verifier = JwtVerifier(JwtSettings(issuer="idp", audience="rop", public_key_pem=pem))
    claims = {"iss": "idp", "aud": "rop", "sub": "svc-epj", "roles": ["system"]}
    token = jwt.encode(claims | {"exp": int(time.time()) + 60}, key, algorithm="RS256")
    principal = await verifier.verify(token)
    assert (principal.name, principal.roles) == ("svc-epj", frozenset({Role.SYSTEM}))
    as_text = claims | {"roles": "system", "exp": int(time.time()) + 60}
    with pytest.raises(AuthenticationFailed, match="roles claim is not a list"):
        await verifier.verify(jwt.encode(as_text, key, algorithm="RS256"))
    # The classic confusion: an HS256 token "signed" with the public key as the secret.
    forged = _hs256(claims | {"exp": int(time.time()) + 60}, pem.encode())
    with pytest.raises(AuthenticationFailed):
        await verifier.verify(forged)
    missing_expiry = jwt.encode(claims, key, algorithm="RS256")
    with pytest.raises(AuthenticationFailed, match="exp"):
        await verifier.verify(missing_expiry)
