"""Client SDK: drive the Plasma services (simulate -> train -> compile -> deploy -> evaluate)."""

from plasma.sdk.client import Endpoints, PlasmaClient
from plasma.sdk.workflow import WorkflowConfig, WorkflowSummary, train_and_deploy

__all__ = ["Endpoints", "PlasmaClient", "WorkflowConfig", "WorkflowSummary", "train_and_deploy"]
