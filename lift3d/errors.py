"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class Lift3DError(Exception):
    """Base of errors whose message names the problem and the fix."""

    exit_code = 2


class ConfigError(Lift3DError):
    """An invalid configuration: unknown key, wrong type, unknown module name."""


class RegistryError(ConfigError):
    """An unknown or duplicate module name."""


class PluginError(Lift3DError):
    """A plugin that could not be imported."""


class PriorError(Lift3DError):
    """A diffusion prior that is missing or unreadable, or a prompt it cannot read."""


class RunError(Lift3DError):
    """A run directory or checkpoint that is missing or unusable."""


class InputError(Lift3DError):
    """An input file (mesh, suite, output folder) that is missing, unreadable or of the wrong kind."""
