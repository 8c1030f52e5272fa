"""Moved to ``oss_finetune.modeling.mxfp4``; this name stays for one release."""

from ._moved import alias

alias(__name__)
