"""User-facing errors: one clear line, exit code 2, no traceback (``--debug`` shows it)."""
from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad config, missing file, unsupported option).

    The message names the culprit and, where possible, the fix. The CLI prints it as a
    single line and exits with code 2.
    """

    exit_code = 2
