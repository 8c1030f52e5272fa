"""Moved to ``oss_finetune.training.memory``; this name stays for one release."""

from ._moved import alias

alias(__name__)
