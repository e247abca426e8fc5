"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class JcurateError(Exception):
    """Bad input the user can fix: a config key, a manifest entry, a missing file."""


def first_line(e: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (its type name when it has none), cut to ``limit``."""
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return line[:limit] if limit else line
