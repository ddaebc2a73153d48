"""The exception types for user mistakes: the CLI prints the message on one line and exits."""

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


class ConfigError(UsageError):
    """A configuration field with a value the core cannot use. The message speaks of the field
    (`hidden must be at least 1`); the command line names its flag instead (`--hidden ...`), a
    checkpoint loader the stored configuration."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem
