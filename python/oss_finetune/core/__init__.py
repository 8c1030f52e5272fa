"""The torch-free bottom layer: the config and its schema, the tokenizer, Harmony and the data.

Nothing here imports torch, and nothing here imports a layer above (modeling, training, embedded,
notebook); docs/architecture.md draws the layers.
"""
