"""``python -m wsreplay``: the same as the ``wsreplay`` command."""

from wsreplay.cli import entry_point

entry_point()
