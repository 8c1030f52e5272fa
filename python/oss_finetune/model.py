"""Moved to ``oss_finetune.modeling.model``; this name stays for one release."""

from ._moved import alias

alias(__name__)
