"""Norsk helsenett's Meldingstjener (REST API v2), signed in to with HelseID.

`HelseIdTokens` gets access tokens by the client-credentials grant, authenticating with a
client assertion (a JWT signed with the project's key, RFC 7523) as HelseID asks of machine
clients; a token is kept until shortly before it expires. `Meldingstjener` sends a business
document (`POST /Messages`) and reads its application receipts (`GET
/Messages/{id}/apprec`), with the headers the API requires (`api-version: 2`,
`nhn-source-system`). Production code knows only the base URLs; `nhn_local/` holds
the local doubles the tests and `make run` use.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

API_VERSION = "2"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_MARGIN_SECONDS = 30
"""A token is renewed this long before it expires."""


class NhnError(RuntimeError):
    """Meldingstjener or HelseID answered with an error (retried: the service may be down)."""


class ReceiptStatus(StrEnum):
    """An application receipt's status (AppRec 1.1, as Meldingstjener reports it)."""

    OK = "Ok"
    REJECTED = "Rejected"
    OK_ERROR_IN_MESSAGE_PART = "OkErrorInMessagePart"


@dataclass(frozen=True)
class Receipt:
    """The receiver's application receipt: its status and, when rejected, the error codes."""

    status: ReceiptStatus
    errors: tuple[str, ...] = ()

    def describe(self) -> str:
        codes = ", ".join(self.errors)
        return f"{self.status.value} ({codes})" if codes else self.status.value


class HelseIdTokens:
    """Access tokens from HelseID for this client (client credentials, client assertion)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        token_endpoint: str,
        client_id: str,
        private_key_pem: bytes,
        key_id: str,
        scope: str,
    ) -> None:
        self._http = http
        self._endpoint = token_endpoint
        self._client_id = client_id
        self._key = private_key_pem
        self._key_id = key_id
        self._scope = scope
        self._token: str | None = None
        self._expires = 0.0

    @classmethod
    def from_key_file(
        cls, http: httpx.AsyncClient, *, key_file: Path, **settings: str
    ) -> HelseIdTokens:
        """With the client's private key (PEM) from `key_file`, named by its thumbprint."""
        key = key_file.read_bytes()
        return cls(http, private_key_pem=key, key_id=key_thumbprint(key), **settings)

    async def token(self) -> str:
        """A valid access token, fetched anew only near its expiry."""
        if self._token is not None and time.time() < self._expires - TOKEN_MARGIN_SECONDS:
            return self._token
        response = await self._http.post(
            self._endpoint,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": self._assertion(),
                "scope": self._scope,
            },
        )
        if response.status_code != 200:
            raise NhnError(f"HelseID refused the token request: {response.status_code}")
        body = response.json()
        self._token = str(body["access_token"])
        self._expires = time.time() + float(body.get("expires_in", 60))
        return self._token

    def _assertion(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self._client_id,
            "sub": self._client_id,
            "aud": self._endpoint,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "nbf": now,
            "exp": now + 60,
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._key_id})


def public_jwk(private_key_pem: bytes) -> dict[str, str]:
    """The public half of an RSA key as a JWK, named by its thumbprint (`kid`): what the
    client's registration in HelseID holds."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    jwk: dict[str, str] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": key_thumbprint(private_key_pem), "alg": "RS256", "use": "sig"}


def key_thumbprint(private_key_pem: bytes) -> str:
    """The RFC 7638 thumbprint of the key's public half."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class Meldingstjener:
    """The Meldingstjener REST API v2, for one source system."""

    def __init__(
        self, http: httpx.AsyncClient, base_url: str, tokens: HelseIdTokens, source_system: str
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._tokens = tokens
        self._source = source_system

    async def send(self, business_document: bytes) -> str:
        """Post a business document; the id Meldingstjener gives the message."""
        response = await self._http.post(
            f"{self._base}/Messages",
            json={
                "businessDocument": base64.b64encode(business_document).decode(),
                "contentType": "application/xml",
                "contentTransferEncoding": "base64",
            },
            headers=await self._headers(),
        )
        if response.status_code != 201:
            raise NhnError(f"Meldingstjener refused the message: {response.status_code}")
        return str(uuid.UUID(str(response.json())))

    async def receipt(self, message_id: str, receiver_her_id: int) -> Receipt | None:
        """The receiver's application receipt for the message, or None while there is none."""
        response = await self._http.get(
            f"{self._base}/Messages/{message_id}/apprec", headers=await self._headers()
        )
        if response.status_code != 200:
            raise NhnError(f"Meldingstjener did not give the receipt: {response.status_code}")
        for info in response.json():
            if info.get("receiverHerId") == receiver_her_id and info.get("appRecStatus"):
                errors = tuple(e["errorCode"] or "" for e in info.get("appRecErrorList") or [])
                return Receipt(ReceiptStatus(info["appRecStatus"]), errors)
        return None

    async def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {await self._tokens.token()}",
            "api-version": API_VERSION,
            "nhn-source-system": self._source,
        }
