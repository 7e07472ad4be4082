"""nuclei_core and the nucleus-analysis CLIs (Slicer execution model) for the DSA and QuPath."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="nuclei-analysis",
    version="0.1.0",
    description=__doc__,
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["nuclei_core", "nuclei_core.*", "plugins"]),
    package_data={"nuclei_core.models": ["weights/*.pt", "weights/*.md", "weights/*.json"]},
    install_requires=[],  # pinned in requirements.txt, installed by scripts/install.sh
    entry_points={"console_scripts": ["nuclei-cli = plugins.__main__:main"]},
)
