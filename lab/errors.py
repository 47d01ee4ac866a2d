"""The one exception type for "the user gave bad input" (or the world is not as asked).

Everything the lab refuses on purpose is a LabError with a one-line message
written for a person. The command line turns it into that line on stderr and
a non-zero exit; anything else that escapes is a bug and keeps its traceback.
"""

__all__ = ["LabError", "last_line"]


class LabError(Exception):
    """A refusal the user can act on: bad parameter, no server, pidfile locked..."""

    exit_code = 2


def last_line(text: str, otherwise: str = "no output") -> str:
    """The last line a program printed, where a failing tool puts its reason
    (an error after its traceback or its log), or `otherwise` if it printed nothing."""
    lines = text.strip().splitlines()
    return lines[-1] if lines else otherwise
