"""Moved to ``oss_finetune.notebook.session``; this name stays for one release."""

from ._moved import alias

alias(__name__)
