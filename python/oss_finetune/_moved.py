"""The module names of the flat layout, kept for one release as aliases of where the code lives now.

``import oss_finetune.train`` gives the very module ``oss_finetune.training.trainer`` (not a copy), so
attributes set through the old name reach the code that reads them. docs/architecture.md lists the
moves.
"""

from __future__ import annotations

import importlib
import sys

MOVED = {
    "data": "core.data",
    "harmony": "core.harmony",
    "memory": "training.memory",
    "model": "modeling.model",
    "mxfp4": "modeling.mxfp4",
    "schema": "core.schema",
    "session": "notebook.session",
    "tokenizer": "core.tokenizer",
    "train": "training.trainer",
}


def alias(old_name: str) -> None:
    """Make ``oss_finetune.<old>`` the module it moved to, with the embedded models registered as before."""
    importlib.import_module("oss_finetune.embedded")
    short = old_name.rsplit(".", 1)[-1]
    sys.modules[old_name] = importlib.import_module(f"oss_finetune.{MOVED[short]}")
