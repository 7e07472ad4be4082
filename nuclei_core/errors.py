"""Errors that the CLIs report to the user as one line and a non-zero exit."""

import argparse
from typing import NoReturn


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


class OneLineErrors:
    """An argparse parser mixin: a command-line error is one line naming the problem and where help is (argparse
    prints the usage first), exit code 2."""

    def error(self, message: str) -> NoReturn:
        message = message.replace("invalid parseValue value", "invalid value")  # ctk_cli's converter's name
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class OneLineArgumentParser(OneLineErrors, argparse.ArgumentParser):
    """argparse's parser with one-line errors (the Girder runner's, the training scripts')."""
