"""Errors that callers catch without importing TensorFlow (`blurnet.export` re-exports them)."""
from __future__ import annotations


class NotAnExportError(ValueError):
    """A folder that is not a blurnet export; the message says what was expected."""
