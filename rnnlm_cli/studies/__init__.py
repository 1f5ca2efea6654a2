"""Studies: many trainings of one base configuration (sweep.py: grids and random search run as
separate `rnnlm train` processes; tune.py: Optuna trials trained in the worker's process)."""
