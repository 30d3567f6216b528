"""Compiler service: policy bundle from the trainer -> verified int8 instruction packet."""
