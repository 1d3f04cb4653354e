"""Connecting to Temporal with the data converter every part of the system shares."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from starter.settings import RopSettings

DATA_CONVERTER: DataConverter = pydantic_data_converter
"""Pydantic v2 models in and out of payloads; the worker, clients and replayer all use it."""


async def connect(settings: RopSettings) -> Client:
    """A Temporal client for the configured address and namespace."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=DATA_CONVERTER,
    )
