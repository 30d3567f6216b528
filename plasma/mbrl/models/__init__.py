"""World models: the probabilistic ensemble and its archive format."""
