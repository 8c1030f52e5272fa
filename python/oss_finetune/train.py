"""Moved to ``oss_finetune.training.trainer``; this name stays for one release."""

from ._moved import alias

alias(__name__)
