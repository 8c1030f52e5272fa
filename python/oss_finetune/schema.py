"""Moved to ``oss_finetune.core.schema``; this name stays for one release."""

from ._moved import alias

alias(__name__)
