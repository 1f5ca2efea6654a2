"""Studies: many trainings of one base configuration, launched and gathered (orchestration:
nothing below imports them). sweep.py: grids and random search run as separate `rnnlm train`
processes; tune.py: Optuna trials trained in the worker's process; longrange.py: the long-range
memory study (copy and agreement tasks, models x truncations)."""
