"""Local doubles of the two national services Dialogmelding needs: HelseID's token endpoint
and Norsk helsenett's Meldingstjener (REST API v2).

They implement the subset rop-forlop uses and are strict where the real ones are: HelseID
issues a token only for a client assertion signed with the client's registered key, for its
own token endpoint, not expired and not replayed; Meldingstjener checks every request
against the published OpenAPI (`tests/data/nhn/msh-api-v2.json`, with openapi-core), wants
a HelseID token, reads the business document's MsgId and receiver, and answers each
receiver's application receipt as configured (`Ok`, or `Rejected` with error codes). Faults
on demand: a document's first POST fails (503), or the service is down.

For the tests and `make run` only: production knows base URLs (`ROP_NHN_MELDINGSTJENER_URL`,
`ROP_HELSEID_TOKEN_ENDPOINT`), and neither the wheel nor the image ships the doubles.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from openapi_core import OpenAPI
from openapi_core.contrib.aiohttp import AIOHTTPOpenAPIWebRequest

from activities.dialogmelding import DIALOG, MSGHEAD
from activities.nhn import CLIENT_ASSERTION_TYPE, public_jwk

PUBLISHED = Path(__file__).resolve().parent / "published"
"""The published OpenAPI and XSDs, with their source and terms (`published/SOURCE.md`)."""
SPEC = PUBLISHED / "msh-api-v2.json"
CLIENT_ID = "rop-forlop-test-client"
AUDIENCE = "nhn:msh"


def free_port() -> int:
    """A port free on the loopback interface now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def new_private_key() -> bytes:
    """An RSA key in PEM, as a HelseID client or HelseID itself holds one."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class HelseId:
    """The token endpoint and JWKS of a HelseID double."""

    client_key: dict[str, str]
    """The registered client's public JWK."""
    url: str = ""
    signing_key: bytes = field(default_factory=new_private_key)
    issued: int = 0
    refused: list[str] = field(default_factory=list)
    seen_assertions: set[str] = field(default_factory=set)

    @property
    def token_endpoint(self) -> str:
        return f"{self.url}/connect/token"

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        try:
            claims = self._check(form)
        except (ValueError, jwt.PyJWTError) as error:
            self.refused.append(str(error))
            return web.json_response({"error": "invalid_client"}, status=400)
        self.issued += 1
        now = int(time.time())
        token = jwt.encode(
            {
                "iss": self.url,
                "aud": AUDIENCE,
                "client_id": claims["iss"],
                "scope": form.get("scope", ""),
                "iat": now,
                "exp": now + 300,
                "jti": str(uuid.uuid4()),
            },
            self.signing_key,
            algorithm="RS256",
            headers={"typ": "at+jwt", "kid": "helseid-double"},
        )
        return web.json_response({"access_token": token, "expires_in": 300, "token_type": "Bearer"})

    def _check(self, form: Any) -> dict[str, Any]:
        if form.get("grant_type") != "client_credentials":
            raise ValueError("grant_type must be client_credentials")
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise ValueError("a client assertion is required")
        assertion = str(form.get("client_assertion", ""))
        key = RSAAlgorithm.from_jwk(json.dumps(self.client_key))
        claims: dict[str, Any] = jwt.decode(
            assertion,
            key,  # type: ignore[arg-type]
            algorithms=["RS256"],
            audience=self.token_endpoint,
            options={"require": ["iss", "sub", "aud", "exp", "jti"]},
        )
        if claims["iss"] != CLIENT_ID or claims["sub"] != CLIENT_ID:
            raise ValueError("unknown client")
        if claims["jti"] in self.seen_assertions:
            raise ValueError("client assertion replayed")
        self.seen_assertions.add(claims["jti"])
        return claims

    def verify(self, token: str) -> dict[str, Any]:
        """An access token this HelseID issued, checked as a resource server checks it."""
        public = serialization.load_pem_private_key(self.signing_key, password=None).public_key()
        claims: dict[str, Any] = jwt.decode(
            token,
            public,  # type: ignore[arg-type]
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=self.url,
        )
        return claims


@dataclass
class Sent:
    """A message Meldingstjener accepted."""

    message_id: str
    business_document_id: str
    receiver_her_id: int
    document: bytes


@dataclass
class Meldingstjener:
    """The Meldingstjener double's state: what it accepted, and how it answers."""

    helseid: HelseId
    url: str = ""
    receipts: dict[int, tuple[str, list[str]]] = field(default_factory=dict)
    """By receiver HER-id: `("Rejected", ["E10"])`; receivers not named answer `Ok`."""
    receipt_after_polls: int = 0
    """The first polls for each message find no receipt yet (the receiver is slow)."""
    polls: Counter[str] = field(default_factory=Counter)
    fail_first_post: bool = False
    """The first POST of each business document fails with 503 (a busy service)."""
    down: bool = False
    sent: list[Sent] = field(default_factory=list)
    posts: Counter[str] = field(default_factory=Counter)
    """POSTs by business document id, failed ones too."""
    invalid: list[str] = field(default_factory=list)
    """Requests the OpenAPI refused, with why."""
    unauthorised: int = 0
    openapi: OpenAPI | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        assert self.openapi is not None
        try:
            self.openapi.validate_request(AIOHTTPOpenAPIWebRequest(request, body=body))
        except Exception as error:
            self.invalid.append(f"{request.method} {request.path}: {error}")
            return web.json_response({"error": str(error), "errorCode": 1000}, status=400)
        try:
            self.helseid.verify(request.headers.get("Authorization", "").removeprefix("Bearer "))
        except jwt.PyJWTError:
            self.unauthorised += 1
            return web.json_response({"error": "Unauthorized", "errorCode": 0}, status=401)
        if self.down:
            return web.json_response({"error": "Service unavailable", "errorCode": 0}, status=503)
        if request.method == "POST":
            return self._post(json.loads(body))
        return self._receipt(request.match_info["id"])

    def _post(self, message: dict[str, Any]) -> web.Response:
        document = base64.b64decode(message["businessDocument"])
        head = ET.fromstring(document)  # noqa: S314 - our own test data
        business_id = head.findtext(f"{{{MSGHEAD}}}MsgInfo/{{{MSGHEAD}}}MsgId") or ""
        self.posts[business_id] += 1
        if self.fail_first_post and self.posts[business_id] == 1:
            return web.json_response({"error": "Busy", "errorCode": 0}, status=503)
        receiver = head.find(f"{{{MSGHEAD}}}MsgInfo/{{{MSGHEAD}}}Receiver")
        assert receiver is not None
        her_ids = [e.text or "" for e in receiver.iter(f"{{{MSGHEAD}}}Id")]
        sent = Sent(str(uuid.uuid4()), business_id, int(her_ids[-1]), document)
        self.sent.append(sent)
        return web.json_response(sent.message_id, status=201)

    def _receipt(self, message_id: str) -> web.Response:
        sent = next((s for s in self.sent if s.message_id == message_id), None)
        if sent is None:
            return web.json_response({"error": "Not found", "errorCode": 0}, status=404)
        self.polls[message_id] += 1
        if self.polls[message_id] <= self.receipt_after_polls:
            return web.json_response([{"receiverHerId": sent.receiver_her_id}])
        status, errors = self.receipts.get(sent.receiver_her_id, ("Ok", []))
        return web.json_response(
            [
                {
                    "receiverHerId": sent.receiver_her_id,
                    "appRecStatus": status,
                    "appRecErrorList": [
                        {"errorCode": code, "details": "Avvist i testen"} for code in errors
                    ],
                }
            ]
        )

    async def listing(self, request: web.Request) -> web.Response:
        """`GET /_local/messages`: what was accepted and the receipt each receiver gave, for a
        person trying the local stack (not a Meldingstjener route; no patient content)."""
        listed = []
        for sent in self.sent:
            status, errors = self.receipts.get(sent.receiver_her_id, ("Ok", []))
            head = ET.fromstring(sent.document)  # noqa: S314 - documents this double accepted
            listed.append(
                {
                    "messageId": sent.message_id,
                    "businessDocumentId": sent.business_document_id,
                    "receiverHerId": sent.receiver_her_id,
                    "messageType": _attribute(head, "Type", "V"),
                    "appRecStatus": status,
                    "appRecErrors": errors,
                }
            )
        return web.json_response(listed)

    def accepted(self) -> Counter[str]:
        """Accepted messages by business document id."""
        return Counter(s.business_document_id for s in self.sent)

    def dialogs(self) -> list[ET.Element]:
        """The Dialogmelding of each accepted message."""
        found = []
        for sent in self.sent:
            dialog = ET.fromstring(sent.document).find(f".//{{{DIALOG}}}Dialogmelding")  # noqa: S314
            assert dialog is not None
            found.append(dialog)
        return found


@dataclass(frozen=True)
class Network:
    """Both doubles, up, and what the worker's settings need to reach them."""

    helseid: HelseId
    meldingstjener: Meldingstjener
    client_key_file: Path


def _attribute(head: ET.Element, name: str, attribute: str) -> str:
    found = head.find(f"{{{MSGHEAD}}}MsgInfo/{{{MSGHEAD}}}{name}")
    return "" if found is None else found.get(attribute, "")


@contextlib.asynccontextmanager
async def norsk_helsenett(folder: Path, port: int | None = None) -> AsyncIterator[Network]:
    """HelseID and Meldingstjener doubles on a local port (`port`, else a free one), with a
    client key in `folder`."""
    client_key = new_private_key()
    key_file = folder / "helseid-client.pem"
    key_file.write_bytes(client_key)
    helseid = HelseId(client_key=public_jwk(client_key))
    meldingstjener = Meldingstjener(helseid)
    app = web.Application()
    app.router.add_post("/connect/token", helseid.token)
    app.router.add_post("/Messages", meldingstjener.handle)
    app.router.add_get("/Messages/{id}/apprec", meldingstjener.handle)
    app.router.add_get("/_local/messages", meldingstjener.listing)
    runner = web.AppRunner(app)
    await runner.setup()
    port = port or free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    helseid.url = meldingstjener.url = base
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    spec["servers"] = [{"url": "http://127.0.0.1"}]  # openapi-core's aiohttp request: no port
    # HTTP auth schemes are case-insensitive; openapi-core compares with the spec's spelling
    # ("Bearer") lower-cased, so it is written as it compares.
    spec["components"]["securitySchemes"]["Bearer"]["scheme"] = "bearer"
    meldingstjener.openapi = OpenAPI.from_dict(spec)
    try:
        yield Network(helseid, meldingstjener, key_file)
    finally:
        await runner.cleanup()
