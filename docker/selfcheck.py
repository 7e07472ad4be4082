"""Build-time self-check of the image: ``--list_cli`` works, every listed CLI prints its ``--xml`` and its module
(with the models and the engine it loads) imports."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree


def main() -> int:
    listing = subprocess.run([sys.executable, "-m", "plugins", "--list_cli"], check=True,
                             capture_output=True, text=True).stdout
    names = list(json.loads(listing))
    for name in names:
        spec = subprocess.run([sys.executable, "-m", "plugins", name, "--xml"], check=True,
                              capture_output=True, text=True).stdout
        ElementTree.fromstring(spec)
        importlib.import_module(f"plugins.{name}")
    print(f"self-check passed: {', '.join(names)}")
    return 0 if names else 1


if __name__ == "__main__":
    sys.exit(main())
