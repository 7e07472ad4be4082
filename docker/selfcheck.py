"""Build-time self-check of the image: ``--list_cli`` works and every listed CLI prints its ``--xml``."""

from __future__ import annotations

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
    print(f"self-check passed: {', '.join(names)}")
    return 0 if names else 1


if __name__ == "__main__":
    sys.exit(main())
