"""The model: sources of models (hub, local folder, registered embedded ones), loading, LoRA, and the
fast engine's kernels (sink attention, grouped experts, MXFP4 experts). Sits on ``core`` only."""
