"""Problems a user can cause or fix, each told as one line: the CLI prints them and exits 2.

They live apart from the code that raises them, so the command line can name them without
importing that code (and the deep-learning stack behind some of it).
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or settings."""


class SourceError(ValueError):
    """A CSV file that cannot be read as sensor data (the message names the file and the problem)."""


class BrokerError(RuntimeError):
    """The embedded broker cannot be found, does not come up, or died (the message names its log)."""


class SendError(RuntimeError):
    """Readings the broker did not accept (the message says how many and the first error)."""
