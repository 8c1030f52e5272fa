"""Training and what measures it: the trainer, its run folders and checkpoints, the data-parallel
team, generation, the memory planner and the language evaluation. Sits on ``modeling`` and ``core``."""
