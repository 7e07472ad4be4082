"""Errors that the CLIs report to the user as one line and a non-zero exit."""


class NucleiError(Exception):
    """A problem with the user's input or environment, described in one line."""

    exit_code = 2


class InputError(NucleiError):
    """The input slide or a parameter value cannot be used."""


class WeightsError(NucleiError):
    """Model weights are missing or do not fit the architecture."""


class DeviceError(NucleiError):
    """The requested compute device is not available."""


class OutputError(NucleiError):
    """An output file cannot be written."""
