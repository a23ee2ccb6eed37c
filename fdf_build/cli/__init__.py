"""The command line: :mod:`.main` holds the ``fdf-build`` group, the other modules its commands by concern.

This file imports click alone, so that ``search_username.py`` (:mod:`.search`) starts on click and the stdlib.
"""

import click


class InputError(click.ClickException):
    """Bad input (a malformed or incomplete dataset, a query naming nothing): one clear line and exit status 2."""

    exit_code = 2
