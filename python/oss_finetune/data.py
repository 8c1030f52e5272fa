"""Moved to ``oss_finetune.core.data``; this name stays for one release."""

from ._moved import alias

alias(__name__)
