"""A read-only view of results.json, shared by the report's tables and its plots.

Both walk the same nested cells in the same target order and name the targets
the same way; keeping that here lets report.py import plots.py and not the reverse.
"""

from __future__ import annotations

from typing import Any


def get(data: Any, *path: str | int) -> Any:
    """``data[path[0]][path[1]]...``, or None where a level is missing (ints key as strings)."""
    for key in path:
        if isinstance(data, dict):
            data = data.get(str(key) if isinstance(key, int) else key)
        else:
            return None
    return data


class Results:
    def __init__(self, document: dict[str, Any]) -> None:
        self.doc = document
        self.meta: dict[str, Any] = document.get("meta", {})
        self.targets: dict[str, Any] = document.get("targets", {})
        self.results: dict[str, Any] = document.get("results", {})

    def label(self, name: str, workload: str = "") -> str:
        entry = self.targets.get(name, {})
        if workload == "fanout" and "fanout_label" in entry:
            return str(entry["fanout_label"])
        return str(entry.get("label", name))

    def names(self, workload: str) -> list[str]:
        """The targets that have results for ``workload``, in run order."""
        present = self.results.get(workload, {})
        return [name for name in self.targets if name in present]
