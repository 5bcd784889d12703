"""User-facing errors: printed as one short line by ``train.py``, never as a traceback."""


class UserError(Exception):
    """Bad input from the user (unknown name, missing data, malformed file)."""
