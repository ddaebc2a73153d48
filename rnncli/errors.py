"""The one exception type for user mistakes: the CLI prints its message on one line and exits."""

USAGE = 2  # a wrong option or argument
DATA = 1  # a file or its content is unusable


class RnncliError(Exception):
    """A problem the user can fix. `exit_code` is 2 for usage, 1 for data."""

    def __init__(self, message: str, exit_code: int = DATA):
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(RnncliError):
    def __init__(self, message: str):
        super().__init__(message, USAGE)
