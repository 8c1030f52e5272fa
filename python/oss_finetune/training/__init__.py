"""Training and what measures it: the trainer, its run folders and checkpoints, the ranks torchrun
starts (and the job the notebook launches), generation, the memory planner and the language evaluation.
Sits on ``modeling`` and ``core``."""
