"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class JcurateError(Exception):
    """Bad input the user can fix: a config key, a manifest entry, a missing file."""
