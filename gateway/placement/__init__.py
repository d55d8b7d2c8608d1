"""Placement of each request among a model's deployments, by policy, load and marginal cost: pure, no I/O."""
