class PtbError(Exception):
    """An error caused by user input or environment; the CLI prints it as one line and exits non-zero."""
