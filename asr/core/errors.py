"""Errors a user can act on. `asr` reports an AsrError in one line (what was wrong, what to do) and exits 2;
any other exception is a bug, and surfaces with its traceback. Imports nothing, so every layer may use it."""


class AsrError(Exception):
    """Bad input, a bad setting or a missing file or package: the message tells the user what to fix."""
