"""Errors a user can act on: each names the file or key, the problem and the fix."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (a file, a config value); the message says which one, what is wrong and the fix."""
