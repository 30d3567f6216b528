"""Client SDK: drive the Plasma services (simulate -> train -> compile -> deploy -> evaluate), from sync code
(PlasmaClient) or asyncio (AsyncPlasmaClient), and act offline from cached packets (plasma.sdk.offline)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plasma.sdk.aio import AsyncPlasmaClient
    from plasma.sdk.client import Endpoints, PlasmaClient
    from plasma.sdk.packet_cache import PacketCache
    from plasma.sdk.workflow import WorkflowConfig, WorkflowSummary, train_and_deploy

# Imported on first use, so that a device with only the `edge` extra can import plasma.sdk.offline without the
# client extra's gymnasium, which the workflow needs.
_EXPORTS = {
    "AsyncPlasmaClient": "plasma.sdk.aio",
    "Endpoints": "plasma.sdk.client",
    "PlasmaClient": "plasma.sdk.client",
    "PacketCache": "plasma.sdk.packet_cache",
    "WorkflowConfig": "plasma.sdk.workflow",
    "WorkflowSummary": "plasma.sdk.workflow",
    "train_and_deploy": "plasma.sdk.workflow",
}
__all__ = ["AsyncPlasmaClient", "Endpoints", "PacketCache", "PlasmaClient", "WorkflowConfig", "WorkflowSummary",
           "train_and_deploy"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
