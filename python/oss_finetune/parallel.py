"""Moved to ``oss_finetune.training.parallel``; this name stays for one release."""

from ._moved import alias

alias(__name__)
