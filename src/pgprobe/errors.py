"""The errors pgprobe reports to a person as one line (the CLI prints them without a traceback)."""


class PgprobeError(Exception):
    """Base class: the message names the key, value or file at fault."""


class ConfigError(PgprobeError):
    """Malformed or unsupported parameters."""


class ArtifactError(PgprobeError):
    """A missing, corrupt or mismatched artifact file."""
