"""Payload encryption: AES-256-GCM over every payload Temporal stores.

Temporal keeps every workflow input, Update, activity argument and result in its
history. The codec encrypts each payload before it leaves the client or the worker,
so whoever has only the Temporal database (or its UI without the codec server) sees
ciphertext. The key id travels in the payload's metadata: several keys can be
configured, new payloads use the current one, and old histories still decode.
Keys come from the environment or a file, never from code.

A payload that is not encrypted with a known key is refused, not read: otherwise anyone
who reaches the Temporal frontend could start or drive a pathway around the API and its
access log. The codec hands such a payload on as `REFUSED_PLAIN`, which the payload
converter (`rop_runtime.client`) will not turn into a value: an Update carrying one is
rejected, a start carrying one fails, and nothing is applied or recorded.
`ROP_ACCEPT_PLAIN_PAYLOADS` lets them through while data from before encryption is moved.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
REFUSED_PLAIN = b"binary/rop-refused-plain"
"""The encoding the codec gives a payload it refused: not encrypted with a known key."""
KEY_ID = "encryption-key-id"
_NONCE_BYTES = 12


class KeyConfigurationError(ValueError):
    """The key configuration is missing or malformed; the message says which part."""


class EncryptionCodec(PayloadCodec):
    """Encrypts with the current key; decrypts with whichever key a payload names."""

    def __init__(
        self, keys: Mapping[str, bytes], current: str, *, accept_plain: bool = False
    ) -> None:
        if current not in keys:
            raise KeyConfigurationError(
                f"the current key id {current!r} is not among the configured keys"
            )
        for key_id, key in keys.items():
            if len(key) != 32:
                raise KeyConfigurationError(
                    f"key {key_id!r} must be 32 bytes (AES-256), not {len(key)}"
                )
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._current = current
        self._accept_plain = accept_plain

    def for_display(self) -> EncryptionCodec:
        """This codec, passing plain payloads through: for showing a history (the codec
        server), where a plain payload is already readable and refusing it would hide it."""
        viewer = copy.copy(self)
        viewer._accept_plain = True
        return viewer

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._current]
        encoded = []
        for payload in payloads:
            nonce = os.urandom(_NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), self._current.encode())
            encoded.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID: self._current.encode()},
                    data=nonce + sealed,
                )
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                # Not ours: sent around the API, or written before encryption was configured.
                decoded.append(payload if self._accept_plain else _refused())
                continue
            key_id = payload.metadata[KEY_ID].decode()
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                raise KeyConfigurationError(f"payload encrypted with unknown key id {key_id!r}")
            nonce, sealed = payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:]
            decoded.append(Payload.FromString(cipher.decrypt(nonce, sealed, key_id.encode())))
        return decoded


def _refused() -> Payload:
    return Payload(metadata={"encoding": REFUSED_PLAIN})


def parse_keys(spec: str) -> dict[str, bytes]:
    """Keys from `id:base64,id:base64` (the ROP_PAYLOAD_KEYS form)."""
    keys: dict[str, bytes] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key_id, _, encoded = part.partition(":")
        if not key_id or not encoded:
            raise KeyConfigurationError("ROP_PAYLOAD_KEYS: write id:base64key, separated by commas")
        try:
            keys[key_id] = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise KeyConfigurationError(
                f"ROP_PAYLOAD_KEYS: key {key_id!r} is not valid base64"
            ) from None
    return keys


def read_key_file(path: Path) -> tuple[dict[str, bytes], str]:
    """Keys and the current id from a JSON file: {"current": "k2", "keys": {"k1": "<b64>"}}."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        keys = {key_id: base64.b64decode(value) for key_id, value in content["keys"].items()}
        return keys, str(content["current"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise KeyConfigurationError(f"ROP_PAYLOAD_KEYS_FILE {path}: {error}") from None


def write_new_key_file(path: Path, key_id: str = "local-1") -> None:
    """A fresh random key, for the local stack's first start (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"current": key_id, "keys": {key_id: base64.b64encode(os.urandom(32)).decode()}}
    path.write_text(json.dumps(content), encoding="utf-8")
    path.chmod(0o600)
