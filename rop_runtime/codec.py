"""Payload encryption: AES-256-GCM over every payload Temporal stores.

Temporal keeps every workflow input, Update, activity argument and result in its
history. The codec encrypts each payload before it leaves the client or the worker,
so whoever has only the Temporal database (or its UI without the codec server) sees
ciphertext. The key id travels in the payload's metadata: several keys can be
configured, new payloads use the current one, and old histories still decode.
Keys come from the environment or a file, never from code.

Every payload is bound to its pathway. The SDK tells the codec whose payload it handles
(`WorkflowSerializationContext` or `ActivitySerializationContext`: namespace and workflow
id); the codec writes both into the payload's metadata and seals them into the ciphertext
as AES-GCM associated data, so they cannot be changed without the key. A payload therefore
says, verifiably, which pathway it belongs to: the codec server decides who may read it
from that binding, not from what a caller claims, and a worker refuses a payload bound to
another workflow or namespace (copied from one pathway's history into another's).
Payloads sealed before binding (associated data: the key id alone) still open.

A payload that cannot be opened is refused, not read, and never fails a workflow task
(which would stop the pathway until someone reset it): not encrypted (otherwise anyone who
reaches the Temporal frontend could start or drive a pathway around the API and its access
log), a key id this process does not have, a ciphertext that does not verify, or a
binding to another pathway. The codec hands it on as a `REFUSED_PLAIN` payload whose
`rop-refused` metadata says why; the payload converter (`rop_runtime.client`) will not
turn it into a value: an Update carrying one is rejected, a start carrying one fails, a
Signal carrying one is dropped, and nothing is applied or recorded.
`ROP_ACCEPT_PLAIN_PAYLOADS` lets plain payloads through while data from before encryption is
moved.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

ENCODING = b"binary/encrypted"
REFUSED_PLAIN = b"binary/rop-refused-plain"
"""The encoding the codec gives a payload it refused (`REFUSED_WHY` says why)."""
REFUSED_WHY = "rop-refused"
KEY_ID = "encryption-key-id"
NAMESPACE = "rop-namespace"
WORKFLOW_ID = "rop-workflow-id"
"""Metadata of a bound payload: the namespace and workflow it belongs to (also sealed)."""
_NONCE_BYTES = 12
REPLAY_NAMESPACE = "ReplayNamespace"
"""The namespace `temporalio.worker.Replayer` gives its serialization context by default."""


@dataclass(frozen=True)
class Binding:
    """The pathway a payload belongs to."""

    namespace: str
    workflow_id: str

    def admits(self, payload: Binding) -> bool:
        """Whether a payload bound to `payload` belongs here. The SDK's Replayer names the
        namespace `ReplayNamespace` unless told otherwise: it replays a history fetched from
        its own namespace already, so there only the workflow id must match."""
        if self.namespace == REPLAY_NAMESPACE:
            return payload.workflow_id == self.workflow_id
        return payload == self

    def associated_data(self, key_id: str) -> bytes:
        """What AES-GCM authenticates besides the ciphertext: key id, namespace, workflow."""
        return b"\x00".join(
            part.encode() for part in ("rop-binding-1", key_id, self.namespace, self.workflow_id)
        )


def binding_of(payload: Payload) -> Binding | None:
    """The binding a payload's metadata states (verified only when it is opened)."""
    namespace = payload.metadata.get(NAMESPACE)
    workflow_id = payload.metadata.get(WORKFLOW_ID)
    if namespace is None or workflow_id is None:
        return None
    return Binding(namespace.decode(errors="replace"), workflow_id.decode(errors="replace"))


def binding_for(context: SerializationContext) -> Binding | None:
    """The pathway whose payloads the SDK is converting, where the context names one."""
    if isinstance(context, WorkflowSerializationContext):
        return Binding(context.namespace, context.workflow_id)
    if isinstance(context, ActivitySerializationContext) and context.workflow_id:
        return Binding(context.namespace, context.workflow_id)
    return None


class Refusal:
    """Why a payload was refused (the value of its `rop-refused` metadata)."""

    PLAIN = "not encrypted with a known key"
    UNKNOWN_KEY = "encrypted with a key this process does not have"
    TAMPERED = "its ciphertext or binding does not verify"
    OTHER_PATHWAY = "bound to another pathway"


class KeyConfigurationError(ValueError):
    """The key configuration is missing or malformed; the message says which part."""


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """Encrypts with the current key, bound to the pathway the SDK names; decrypts with
    whichever key a payload names and refuses what does not open or belongs elsewhere."""

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
        self._binding: Binding | None = None

    def with_context(self, context: SerializationContext) -> Self:
        """This codec for the payloads of the pathway `context` names (SDK hook)."""
        bound = copy.copy(self)
        bound._binding = binding_for(context)
        return bound

    def bound_to(self, binding: Binding | None) -> EncryptionCodec:
        """This codec for one pathway's payloads (as the SDK's context would make it)."""
        bound = copy.copy(self)
        bound._binding = binding
        return bound

    def for_display(self) -> EncryptionCodec:
        """This codec, passing plain payloads through: for showing a history (the codec
        server), where a plain payload is already readable and refusing it would hide it."""
        viewer = copy.copy(self)
        viewer._accept_plain = True
        return viewer

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._current]
        binding = self._binding
        metadata = {"encoding": ENCODING, KEY_ID: self._current.encode()}
        if binding is not None:
            metadata |= {
                NAMESPACE: binding.namespace.encode(),
                WORKFLOW_ID: binding.workflow_id.encode(),
            }
        associated = binding.associated_data(self._current) if binding else self._current.encode()
        encoded = []
        for payload in payloads:
            nonce = os.urandom(_NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), associated)
            encoded.append(Payload(metadata=metadata, data=nonce + sealed))
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(payload) for payload in payloads]

    def open(self, payload: Payload) -> Payload:
        """The payload inside `payload`, or a refused payload saying why (`Refusal`)."""
        if payload.metadata.get("encoding") != ENCODING:
            # Not ours: sent around the API, or written before encryption was configured.
            return payload if self._accept_plain else refused(Refusal.PLAIN)
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            return refused(Refusal.UNKNOWN_KEY)
        binding = binding_of(payload)
        if binding is not None and self._binding is not None and not self._binding.admits(binding):
            return refused(Refusal.OTHER_PATHWAY)
        associated = binding.associated_data(key_id) if binding else key_id.encode()
        nonce, sealed = payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:]
        try:
            return Payload.FromString(cipher.decrypt(nonce, sealed, associated))
        except (InvalidTag, ValueError):
            return refused(Refusal.TAMPERED)


def refused(why: str) -> Payload:
    """A payload the codec would not open, and why."""
    return Payload(metadata={"encoding": REFUSED_PLAIN, REFUSED_WHY: why.encode()})


def refusal_of(payload: Payload) -> str | None:
    """Why the codec refused `payload`, or None if it did not."""
    if payload.metadata.get("encoding") != REFUSED_PLAIN:
        return None
    return payload.metadata.get(REFUSED_WHY, Refusal.PLAIN.encode()).decode()


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
