"""User-facing errors: one clear line, exit code 2, no traceback (``--debug`` shows it)."""
from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad config, missing file, unsupported option).

    The message names the culprit and, where possible, the fix. The CLI prints it as a
    single line and exits with code 2.
    """

    exit_code = 2


def first_line(err: BaseException) -> str:
    """The first real sentence of an error: MindSpore's open with banners of dashes and headings."""
    lines = [line.strip(" -") for line in str(err).splitlines()]
    text = [line for line in lines if line and not line.endswith(":")]
    return text[0] if text else ""
