"""Build-time pruning of the image's Python environment: remove what nothing loads at run time, then prove it.

Removed: C headers and static archives (for compiling against the packages, never loaded), the test suites
of the large scientific packages, and the CUDA libraries that neither PyTorch nor any other CUDA library
links or opens (the alternative NVRTC build, the multi-GPU solver, profiler plug-ins, BLAS/FFTW shims).
PyTorch's own libraries and NCCL, which ship their static symbol tables and debugging information (230 MB),
are stripped as Debian strips its libraries (``strip --strip-unneeded``: the dynamic symbols that loading
needs stay; C++ backtraces name fewer internal functions). Only these: binutils' strip corrupts libraries
that auditwheel rewrote with patchelf (numpy's OpenBLAS then fails to load: "ELF load command address/offset
not page-aligned"), and the image's self-check imports every CLI after this step.
The check that follows reads every shared library left, before and after, and fails the build if pruning
left any of them needing a library it did not already miss (some never resolve on their own: optional
transport plug-ins for cluster interconnects, extensions that expect torch to be loaded first; the driver's
own libraries are mounted by the NVIDIA container runtime).

    python prune_environment.py /opt/venv
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

# Relative to site-packages.
UNUSED_GLOBS = (
    "nvidia/*/include",
    "torch/include",
    "**/*.a",
    "nvidia/cu13/lib/libnvrtc.alt.so*",
    "nvidia/cu13/lib/libnvrtc-builtins.alt.so*",
    "nvidia/cu13/lib/libcusolverMg.so*",
    "nvidia/cu13/lib/libnvperf_*.so",
    "nvidia/cu13/lib/libpcsamplingutil.so",
    "nvidia/cu13/lib/libcheckpoint.so",
    "nvidia/cu13/lib/libnvblas.so*",
    "nvidia/cu13/lib/libcufftw.so*",
)
STRIPPED_GLOBS = ("torch/lib/*.so", "nvidia/nccl/lib/libnccl.so*")
PACKAGES_WITH_TEST_SUITES = ("numpy", "scipy", "pandas", "sklearn", "skimage", "matplotlib", "networkx",
                             "sympy", "dask", "distributed", "shapely", "PIL")


def removal_targets(site_packages: Path) -> list[Path]:
    """Every file or folder :data:`UNUSED_GLOBS` and the listed packages' ``tests`` folders name."""
    targets = {path for pattern in UNUSED_GLOBS for path in site_packages.glob(pattern)}
    for package in PACKAGES_WITH_TEST_SUITES:
        targets.update(path for path in (site_packages / package).rglob("tests") if path.is_dir())
    return sorted(targets)


def remove(paths: list[Path]) -> int:
    """Delete ``paths`` (files or folders); the bytes freed."""
    freed = 0
    for path in paths:
        if not path.exists():  # inside a folder removed before it
            continue
        if path.is_dir():
            freed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            shutil.rmtree(path)
        else:
            freed += path.stat().st_size
            path.unlink()
    return freed


def shared_libraries(site_packages: Path) -> list[Path]:
    """Every shared library file (``*.so`` and versioned ``*.so.N``) under ``site_packages``."""
    return sorted(path for path in site_packages.rglob("*.so*") if path.is_file() and path.suffix != ".py")


def strip_symbols(site_packages: Path) -> int:
    """``strip --strip-unneeded`` the libraries :data:`STRIPPED_GLOBS` names; the bytes freed."""
    freed = 0
    for library in sorted({path for pattern in STRIPPED_GLOBS for path in site_packages.glob(pattern)}):
        before = library.stat().st_size
        subprocess.run(["strip", "--strip-unneeded", str(library)], check=True)
        freed += before - library.stat().st_size
    return freed


def unresolved_libraries(site_packages: Path) -> set[tuple[str, str]]:
    """(shared library, needed name) for every dependency ``ldd`` cannot find."""
    missing = set()
    for library in shared_libraries(site_packages):
        output = subprocess.run(["ldd", str(library)], capture_output=True, text=True).stdout
        missing.update((str(library.relative_to(site_packages)), line.split()[0])
                       for line in output.splitlines() if "not found" in line)
    return missing


def main(argv: list[str]) -> int:
    """Prune the environment at ``argv[0]``; exit 1 (naming each broken library) if pruning removed a needed one."""
    site_packages = next(Path(argv[0]).glob("lib/python3*/site-packages"))
    missing_before = unresolved_libraries(site_packages)
    removed = remove(removal_targets(site_packages))
    stripped = strip_symbols(site_packages)
    print(f"pruned {removed / 1e6:.0f} MB and stripped {stripped / 1e6:.0f} MB from {site_packages}")
    broken = sorted(unresolved_libraries(site_packages) - missing_before)
    for library, name in broken:
        print(f"{library} needs {name}, which pruning removed", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
