"""Build-time self-check of the image: ``--list_cli`` works, every listed CLI prints its ``--xml`` and its module
(with the models and the engine it loads) imports. ``--compile-imported PACKAGE ...`` then compiles the modules of
those packages that the CLIs imported, so that no run compiles them again (site-packages is read-only at run time)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import py_compile
import subprocess
import sys
import xml.etree.ElementTree as ElementTree


def compile_imported(packages: list[str]) -> int:
    """Write the bytecode of every imported module of ``packages``; how many were compiled."""
    files = {getattr(module, "__file__", None) or "" for name, module in list(sys.modules.items())
             if name.split(".")[0] in packages}
    sources = sorted(f for f in files if f.endswith(".py") and os.path.isabs(f) and os.path.isfile(f))
    for source in sources:
        py_compile.compile(source, doraise=True)
    return len(sources)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compile-imported", nargs="*", default=[], metavar="PACKAGE")
    args = parser.parse_args()
    listing = subprocess.run([sys.executable, "-m", "plugins", "--list_cli"], check=True,
                             capture_output=True, text=True).stdout
    names = list(json.loads(listing))
    for name in names:
        spec = subprocess.run([sys.executable, "-m", "plugins", name, "--xml"], check=True,
                              capture_output=True, text=True).stdout
        ElementTree.fromstring(spec)
        importlib.import_module(f"plugins.{name}")
    print(f"self-check passed: {', '.join(names)}")
    if args.compile_imported:
        print(f"compiled {compile_imported(args.compile_imported)} modules of {', '.join(args.compile_imported)}")
    return 0 if names else 1


if __name__ == "__main__":
    sys.exit(main())
