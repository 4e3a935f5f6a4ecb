"""How the command ends: its exit codes and the error that means "fix the command line or the file"."""

EXIT_SUCCESS = 0
EXIT_PROMPT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A problem with the command line or the workflow file: exit 2."""
