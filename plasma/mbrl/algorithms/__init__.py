"""Algorithms that train a policy from phantom paths only: planner distillation and model backpropagation."""
