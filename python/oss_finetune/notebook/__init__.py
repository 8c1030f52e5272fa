"""The notebook front end: the session behind the magics and the widgets' comm, the magics, the rich
outputs and the environment advice. The top layer: nothing in the library imports it."""

from .. import embedded  # noqa: F401 - registers the offline default's models for every notebook path
