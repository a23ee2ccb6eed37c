"""The command line: :mod:`.main` holds the ``fdf-build`` group, the other modules its commands by concern.

This file imports click alone, so that ``search_username.py`` (:mod:`.search`) starts on click and the stdlib.
It holds the one rule for errors that every command and both scripts follow (:func:`one_line_errors`).
"""

import logging
import unicodedata
from contextlib import contextmanager

import click

from ..errors import BadInput, Stopped

log = logging.getLogger(__name__)


class InputError(click.ClickException):
    """Bad input (a malformed or incomplete dataset, a query naming nothing): one clear line and exit status 2."""

    exit_code = 2


@contextmanager
def one_line_errors():
    """What a failure looks like, for every command: one line on stderr, then exit status 2 for bad input or 1.

    Bad input is a :class:`~fdf_build.errors.BadInput` (or click's own usage errors): the library raises it for
    input it cannot use, naming the file. A :class:`~fdf_build.errors.Stopped` exits 1, and so does an ``OSError``
    (``--out /proc/nope``, a read-only folder, a full disk): the input is fine, the place to write it is not; the
    line names the path and the cause, and ``-v`` logs where it came from.
    """
    try:
        yield
    except BadInput as e:
        raise InputError(str(e)) from None
    except Stopped as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        log.debug("stopped by", exc_info=True)
        where = e.filename2 or e.filename  # a rename's destination: the file the command meant to write
        message = f"{where}: {e.strerror}" if where is not None and e.strerror else str(e)
        raise click.ClickException(message) from None


class Command(click.Command):
    """A command that reports failures by :func:`one_line_errors` (the scripts' commands, outside the group)."""

    def invoke(self, ctx):
        with one_line_errors():
            return super().invoke(ctx)


class Group(click.Group):
    """A group whose every command reports failures by :func:`one_line_errors`."""

    def invoke(self, ctx):
        with one_line_errors():
            return super().invoke(ctx)


def printable(value) -> str:
    """``str(value)`` with every character that would act on a terminal (controls, escapes, bidi overrides, line
    separators) written as its Python escape: text from files and from the owner page is shown, never obeyed."""
    return "".join(c.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co") else c for c in str(value))
