"""Connecting to Temporal with the data converter every part of the system shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from temporalio.api.common.v1 import Payload
from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    EncodingPayloadConverter,
)
from temporalio.envconfig import ClientConfigProfile, ClientConnectConfig
from temporalio.exceptions import ApplicationError
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from rop_runtime.codec import (
    REFUSED_PLAIN,
    EncryptionCodec,
    KeyConfigurationError,
    parse_keys,
    read_key_file,
    refusal_of,
)
from rop_runtime.settings import RopSettings

LOCAL_KEY_FILE = "payload-keys.json"
"""The local stack's key file, in its data folder; the CLI finds it there too."""


PLAIN_PAYLOAD_REFUSED = "PlainPayloadRefused"
"""ApplicationError type of a value sent without encryption (`rop_runtime.codec`)."""


class RefusedPlainPayloads(EncodingPayloadConverter):
    """Turns a payload the codec refused into an error that says why.

    Raised while an Update's argument is read, it rejects the Update before its validator
    runs (nothing enters history); raised while a new workflow's input is read, it fails
    that workflow at once. Non-retryable: a retry would meet the same payload.
    """

    @property
    def encoding(self) -> str:
        return REFUSED_PLAIN.decode()

    def to_payload(self, value: Any) -> Payload | None:
        return None  # never writes one

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        raise ApplicationError(
            f"refused: a payload {refusal_of(payload)} (pathways are driven through the rop "
            "API or CLI; see deploy/README, 'Temporal access')",
            type=PLAIN_PAYLOAD_REFUSED,
            non_retryable=True,
        )


class SharedPydanticPayloadConverter(PydanticPayloadConverter):
    """The SDK's pydantic payload converter, one instance for the whole process.

    The worker makes a data converter, and with it a payload converter, for every workflow
    activation; a fresh converter starts with an empty cache of pydantic type adapters, so
    each payload built its adapter again (measured: 5 % of the worker's CPU in `make
    bench`). The converter holds nothing but that cache and its settings, so one serves all.
    """

    _shared: ClassVar[SharedPydanticPayloadConverter | None] = None

    def __new__(cls) -> SharedPydanticPayloadConverter:
        if cls._shared is None:
            shared = super().__new__(cls)
            PydanticPayloadConverter.__init__(shared)
            converters = [*shared.converters.values(), RefusedPlainPayloads()]
            CompositePayloadConverter.__init__(shared, *converters)
            cls._shared = shared
        return cls._shared

    def __init__(self) -> None:
        """Set up once, in `__new__`."""


def data_converter(codec: EncryptionCodec | None) -> DataConverter:
    """Pydantic v2 models in and out of payloads, encrypted by `codec`. The worker, clients,
    codec server and replayer must all use the same keys."""
    return DataConverter(
        payload_converter_class=SharedPydanticPayloadConverter, payload_codec=codec
    )


def codec_from_settings(settings: RopSettings) -> EncryptionCodec:
    """The payload codec the settings configure; an error naming what is missing."""
    local = settings.data_dir / LOCAL_KEY_FILE
    if settings.payload_keys_file is not None:
        keys, current = read_key_file(settings.payload_keys_file)
    elif settings.payload_keys is not None:
        keys = parse_keys(settings.payload_keys.get_secret_value())
        if not keys:
            raise KeyConfigurationError("ROP_PAYLOAD_KEYS is empty")
        current = next(iter(keys))
    elif local.exists():
        keys, current = read_key_file(local)
    else:
        raise KeyConfigurationError(
            "no payload encryption key: set ROP_PAYLOAD_KEYS or ROP_PAYLOAD_KEYS_FILE "
            f"(`make run` makes one in {local})"
        )
    return EncryptionCodec(
        keys, settings.payload_key_id or current, accept_plain=settings.accept_plain_payloads
    )


def tls_config(settings: RopSettings) -> TLSConfig | bool:
    """TLS as the project's settings configure it: a server CA, an mTLS client pair, or TLS
    for an API key."""
    if settings.temporal_tls_ca is None and settings.temporal_tls_cert is None:
        return settings.temporal_api_key is not None  # API keys go over TLS
    return TLSConfig(
        server_root_ca_cert=settings.temporal_tls_ca.read_bytes()
        if settings.temporal_tls_ca
        else None,
        client_cert=settings.temporal_tls_cert.read_bytes() if settings.temporal_tls_cert else None,
        client_private_key=settings.temporal_tls_key.read_bytes()
        if settings.temporal_tls_key
        else None,
    )


DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"


class TemporalConfigError(ValueError):
    """Temporal's own client configuration (its TOML file or TEMPORAL_* variables) is wrong."""


def connect_config(settings: RopSettings) -> ClientConnectConfig:
    """Where and how to connect: Temporal's own client configuration, as the `temporal` CLI
    reads it (a profile from `TEMPORAL_CONFIG_FILE` or the default file, chosen by
    `TEMPORAL_PROFILE`, and `TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`,
    `TEMPORAL_TLS*`), with each `ROP_TEMPORAL_*` setting that is set over it. Operators who
    already configure the CLI configure rop-forlop with it."""
    try:
        profile = ClientConfigProfile.load()
    except Exception as error:  # the SDK's loader raises its own errors for a bad file
        raise TemporalConfigError(f"Temporal client configuration: {error}") from None
    config = profile.to_client_connect_config()
    config["target_host"] = (
        settings.temporal_address or config.get("target_host") or DEFAULT_ADDRESS
    )
    config["namespace"] = (
        settings.temporal_namespace or config.get("namespace") or DEFAULT_NAMESPACE
    )
    if settings.temporal_api_key is not None:
        config["api_key"] = settings.temporal_api_key.get_secret_value()
    ours = tls_config(settings)
    if ours is not False:
        config["tls"] = ours
    return config


async def connect(
    settings: RopSettings,
    *,
    runtime: Runtime | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> Client:
    """A Temporal client as `connect_config` says, encrypting payloads; `runtime` serves
    the worker's metrics (`rop_runtime.metrics`), `interceptors` trace (`rop_runtime.tracing`).
    Raises `TemporalUnreachable` when no frontend answers at the configured address."""
    config = connect_config(settings)
    try:
        return await Client.connect(
            **config,
            data_converter=data_converter(codec_from_settings(settings)),
            runtime=runtime,
            interceptors=interceptors,
        )
    except RuntimeError as error:
        if not str(error).startswith("Failed client connect"):
            raise
        address = config.get("target_host", "localhost:7233")
        raise TemporalUnreachable(f"cannot reach Temporal at {address}: {error}") from None


class TemporalUnreachable(ConnectionError):
    """No Temporal frontend answered where the settings point: one line for the operator."""
