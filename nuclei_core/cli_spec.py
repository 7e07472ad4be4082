"""The Slicer XML spec of each CLI: its own file in ``xml_specs/`` with the shared parameter groups spliced in.

A CLI's file names a shared group with ``<parameters include="NAME"/>``; the group itself lives once in
``xml_specs/shared/NAME.xml``. The include may hold ``<default name="PARAMETER">VALUE</default>`` children: that
CLI's own default for a parameter of the group. ctk_cli and slicer_cli_web read a file, so the composed spec is written
to a per-user cache file named by its content.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import ctk_cli
from ctk_cli.module import CLIParameter
from slicer_cli_web import CLIArgumentParser

from .errors import OneLineErrors

SPEC_DIR = Path(__file__).resolve().parent.parent / "xml_specs"
SHARED_DIR = SPEC_DIR / "shared"


def available_clis() -> list[str]:
    """Every CLI: one XML spec in ``xml_specs/`` (a module of the same name in ``plugins/`` runs it)."""
    return sorted(p.stem for p in SPEC_DIR.glob("*.xml"))


def spec_text(cli_name: str) -> str:
    """The complete XML spec of ``cli_name``, shared groups included."""
    root = ElementTree.parse(SPEC_DIR / f"{cli_name}.xml").getroot()
    for position, child in enumerate(list(root)):
        if child.tag == "parameters" and "include" in child.attrib:
            group = ElementTree.parse(SHARED_DIR / f"{child.attrib['include']}.xml").getroot()
            for own in child.iter("default"):
                parameter = next((p for p in group if p.findtext("name") == own.attrib["name"]), None)
                if parameter is None:
                    raise ValueError(f"{cli_name}.xml: the group {child.attrib['include']!r} has no parameter "
                                     f"{own.attrib['name']!r} to give a default")
                parameter.find("default").text = own.text
            root.remove(child)
            root.insert(position, group)
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"


def spec_path(cli_name: str) -> Path:
    """A file holding :func:`spec_text` (written once per content, atomically)."""
    text = spec_text(cli_name)
    folder = Path(tempfile.gettempdir()) / f"nuclei-specs-{os.getuid()}"
    path = folder / f"{cli_name}-{hashlib.sha1(text.encode()).hexdigest()[:12]}.xml"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(text)
        os.replace(temporary, path)
    return path


def cli_parameters(cli_name: str) -> list[CLIParameter]:
    """The CLI's parameters as ctk_cli reads its XML spec."""
    return list(ctk_cli.CLIModule(str(spec_path(cli_name))).parameters())


class OneLineErrorParser(OneLineErrors, CLIArgumentParser):
    """ctk_cli's parser whose command-line errors are one line (argparse prints the usage first)."""


def cli_parser(cli_name: str) -> CLIArgumentParser:
    """The argument parser of ``cli_name`` built from its spec (it also answers ``--xml`` and ``--help``)."""
    parser = OneLineErrorParser(str(spec_path(cli_name)))
    parser.prog = cli_name  # not "__main__.py" in usage lines and argparse errors under ``python -m plugins``
    return parser
