"""Studies: commands that launch many trainings and gather what they measured (orchestration)."""
