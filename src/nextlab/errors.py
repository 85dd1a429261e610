"""Errors a user can act on.

Every stage raises `NextlabError` (or a subclass) for bad input: a wrong param, a missing or
corrupt file. The CLI prints its message alone, with no traceback, and exits with status 2, so
the message names what is wrong and where before any heavy work starts.
"""


class NextlabError(Exception):
    """A problem with the user's input that the message alone explains."""


class ParamsError(NextlabError):
    """The params file is missing, not YAML, or violates the schema."""


class InputFileError(NextlabError):
    """An input file is missing, empty, corrupt or of the wrong kind."""
