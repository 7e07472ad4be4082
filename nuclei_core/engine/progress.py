"""Progress for people (a tqdm bar on stderr) and for slicer_cli_web (``<filter-progress>`` on stdout)."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    """Counts finished work units; writes at most one ``<filter-progress>`` line per percent."""

    def __init__(self, total: int, name: str, comment: str = "", enabled: bool = True) -> None:
        self.total, self.name, self.done, self._last = max(total, 1), name, 0, -1
        self.enabled = enabled
        self.started = time.time()
        self.bar = tqdm(total=total, desc=name, unit="tile", file=sys.stderr, disable=not enabled, leave=False)
        self._emit(f"<filter-start><filter-name>{name}</filter-name>"
                   f"<filter-comment>{comment}</filter-comment></filter-start>")

    def _emit(self, line: str) -> None:
        if self.enabled:
            print(line, file=sys.stdout, flush=True)

    def update(self, count: int = 1) -> None:
        """Mark ``count`` more units finished."""
        self.done += count
        self.bar.update(count)
        percent = int(100 * self.done / self.total)
        if percent != self._last:
            self._last = percent
            self._emit(f"<filter-progress>{min(self.done / self.total, 1.0):.4f}</filter-progress>")

    def close(self) -> None:
        """End the bar and write ``<filter-end>`` with the elapsed time."""
        self.bar.close()
        self._emit(f"<filter-end><filter-name>{self.name}</filter-name>"
                   f"<filter-time>{time.time() - self.started:.2f}</filter-time></filter-end>")
