"""Fine-tuning: which stored model a fit starts from, and the configuration that keeps its architecture."""

from __future__ import annotations

from dataclasses import replace

from plasma.mbrl.models import ensemble
from plasma.server.errors import FailedPrecondition
from plasma.simulator.v1 import simulator_pb2
from plasma.spaces import EnvSpec
from services.simulator import datasets, requests

# Fields that fix the shape of the weights: a fine-tuned model inherits them from its parent.
ARCHITECTURE = ("ensemble_size", "hidden_size", "num_layers")


def parent_model(
    models: requests.ModelCache,
    model_id: str,
    spec: EnvSpec,
    requested: simulator_pb2.WorldModelConfig,
    config: ensemble.WorldModelConfig,
) -> tuple[ensemble.EnsembleWorldModel, ensemble.WorldModelConfig]:
    """The model to start from and `config` with the parent's architecture. Raises NotFound for an unknown
    id and FailedPrecondition when the spec or an explicitly requested architecture field differs."""
    # Spec and architecture as the weights have them, not as the stored record says: a record without its config
    # (all zeros) asked for ensemble_size=0, and the fit failed with INTERNAL.
    parent = models.get(model_id)
    if parent.spec != spec:
        raise FailedPrecondition(
            f"model {model_id!r} was fitted on {datasets.describe_spec(parent.spec)}, but the dataset holds "
            f"{datasets.describe_spec(spec)} (or the bounds differ); fine-tune only on data of the same spec, "
            f"or fit from scratch without init_from_model_id"
        )
    inherited = {name: getattr(parent.config, name) for name in ARCHITECTURE}
    for name, value in inherited.items():
        asked = getattr(requested, name)
        if asked and asked != value:
            raise FailedPrecondition(
                f"config {name}={asked} differs from {name}={value} of model {model_id!r}; a fine-tuned model "
                f"keeps its parent's architecture, so leave {name} at 0 or set it to {value}"
            )
    return parent, replace(config, **inherited)
