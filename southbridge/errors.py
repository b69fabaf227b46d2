"""The error type every command reports as one line.

A leaf module (it imports nothing from southbridge) so that any layer may raise it without
tying itself to the command line.
"""


class UserError(Exception):
    """Bad user input: reported as one line and a non-zero exit status, never a traceback."""
