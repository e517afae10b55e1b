"""The library's exceptions. The CLI alone turns them into exit codes (DESIGN §3)."""


class NetcheckError(Exception):
    """Base of every error netcheck reports to a user in one line."""

    exit_code: int = 1


class UsageError(NetcheckError):
    """A flag, argument or value the user gave is malformed."""

    exit_code = 2


class ConfigError(NetcheckError):
    """The config file or a NETCHECK_* variable is invalid; the message names the key."""

    exit_code = 2


class MeasurementError(NetcheckError):
    """Nothing could be measured: server unreachable, UDP blocked, timed out."""

    exit_code = 5


class StoreError(NetcheckError):
    """The local store could not be read or written."""

    exit_code = 1
