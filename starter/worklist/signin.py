"""Signing in to the worklist with the OIDC provider the API trusts: the authorization code
flow with PKCE (RFC 7636, S256), as a public client or with a client secret.

The provider is found by discovery from the issuer the API's tokens are checked against
(`ROP_API_JWT_ISSUER`), so the page and the API accept the same people. The access token
the provider returns is what the session authenticates as; the API's own checks (issuer,
audience, lifetime, roles, HPR number, units) apply to it on every request.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx


class SignInFailed(Exception):
    """The provider did not give an access token: the message says why."""


@dataclass(frozen=True)
class OidcClient:
    """The worklist as the provider's client (`ROP_WORKLIST_OIDC_CLIENT_ID`, and a secret
    only for a confidential client)."""

    issuer: str
    client_id: str
    client_secret: str | None = None
    scope: str = "openid"

    async def endpoints(self, http: httpx.AsyncClient) -> tuple[str, str]:
        """The provider's authorization and token endpoints, by discovery."""
        found = await http.get(f"{self.issuer.rstrip('/')}/.well-known/openid-configuration")
        found.raise_for_status()
        document = found.json()
        return str(document["authorization_endpoint"]), str(document["token_endpoint"])


def pkce_pair() -> tuple[str, str]:
    """A code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def authorization_url(
    endpoint: str, client: OidcClient, redirect_uri: str, state: str, challenge: str, nonce: str
) -> str:
    """Where the browser goes to sign in."""
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "scope": client.scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return f"{endpoint}?{urlencode(query)}"


async def exchange(
    http: httpx.AsyncClient,
    token_endpoint: str,
    client: OidcClient,
    *,
    code: str,
    redirect_uri: str,
    verifier: str,
) -> str:
    """The access token for the authorization `code`, proven with the PKCE `verifier`."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client.client_id,
        "code_verifier": verifier,
    }
    if client.client_secret is not None:
        form["client_secret"] = client.client_secret
    answer = await http.post(token_endpoint, data=form)
    if answer.status_code != 200:
        raise SignInFailed(f"the token endpoint answered {answer.status_code}")
    token = answer.json().get("access_token")
    if not isinstance(token, str) or not token:
        raise SignInFailed("the token endpoint gave no access token")
    return token
