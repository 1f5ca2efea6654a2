"""Analysis of models: gradient checks, gradient diagnostics, Jacobians, probes, history."""
