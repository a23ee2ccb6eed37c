"""The two failures a command reports as one line, raised anywhere below the CLI and mapped in one place
(:func:`fdf_build.cli.one_line_errors`): bad input exits 2, a stop for any other reason exits 1.

Stdlib only and on the bottom floor, so every module can raise them (``search_username.py`` starts on click
and the stdlib alone). An ``OSError`` that reaches the CLI (an output that cannot be written, a full disk) is a
stop too: the CLI prints its file and cause. Anything else that escapes is a bug and keeps its traceback.
"""


class BadInput(Exception):
    """Input a command cannot use as given: a dataset that is missing, malformed or incomplete, a metadata file,
    manifest, model or image that does not read as one. The message names the file; exit status 2."""


class Stopped(Exception):
    """Work that cannot go on for a reason outside the input (a resume refused for other settings, an extra that
    is not installed, nothing left to fetch from): the message says what to do; exit status 1."""


class DatasetError(BadInput):
    """A dataset whose files cannot be read as the FDF layout (a malformed metainfo, a missing image or array): the
    message names the file and the problem (``fdf_build.dataset.loaders``)."""
