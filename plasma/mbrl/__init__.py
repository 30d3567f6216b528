"""Plasma's model-based RL library: world models (ensembles of probabilistic networks), fitting and quality,
tasks, planning, rollouts (phantom paths), their audit and error forecasts, and the training algorithms that
learn policies from phantom paths. torch only; no gRPC, no protos (services/ speak those)."""
