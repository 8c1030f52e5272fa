"""The one base class of errors a person can fix.

A ``UserError``'s message is written for the person: it names the field, row or position and says what
to change. The handlers (the magics, the widgets' comm, the command line) show such a message as it is,
in one paragraph; any other exception is a bug, shown with its type and the hint to rerun with
--verbose. Each subclass also keeps its older base (ValueError, RuntimeError, ...), so code that
caught those still does.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the person can fix; ``str(error)`` says what and how."""
