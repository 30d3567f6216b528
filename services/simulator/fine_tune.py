"""Fine-tuning: which stored model a fit starts from, and the configuration that keeps its architecture."""

from __future__ import annotations

from dataclasses import replace

from plasma.mbrl.models import ensemble
from plasma.server.errors import FailedPrecondition
from plasma.simulator.v1 import simulator_pb2
from plasma.spaces import EnvSpec
from services.simulator import datasets, requests
from services.simulator.store import SimulatorStore

# Fields that fix the shape of the weights: a fine-tuned model inherits them from its parent.
ARCHITECTURE = ("ensemble_size", "hidden_size", "num_layers")


def parent_model(
    store: SimulatorStore,
    models: requests.ModelCache,
    model_id: str,
    spec: EnvSpec,
    requested: simulator_pb2.WorldModelConfig,
    config: ensemble.WorldModelConfig,
) -> tuple[ensemble.EnsembleWorldModel, ensemble.WorldModelConfig]:
    """The model to start from and `config` with the parent's architecture. Raises NotFound for an unknown
    id and FailedPrecondition when the spec or an explicitly requested architecture field differs."""
    stored = store.model(model_id)
    parent_spec = EnvSpec.from_proto(stored.env_spec)
    if parent_spec != spec:
        raise FailedPrecondition(
            f"model {model_id!r} was fitted on {datasets.describe_spec(parent_spec)}, but the dataset holds "
            f"{datasets.describe_spec(spec)} (or the bounds differ); fine-tune only on data of the same spec, "
            f"or fit from scratch without init_from_model_id"
        )
    inherited = {name: getattr(stored.config, name) for name in ARCHITECTURE}
    for name, value in inherited.items():
        asked = getattr(requested, name)
        if asked and asked != value:
            raise FailedPrecondition(
                f"config {name}={asked} differs from {name}={value} of model {model_id!r}; a fine-tuned model "
                f"keeps its parent's architecture, so leave {name} at 0 or set it to {value}"
            )
    return models.get(model_id), replace(config, **inherited)
