"""Reading a model card (digitops.card) back: its Markdown tables by section, and its figures as numbers."""

from __future__ import annotations

import re

PERCENT = re.compile(r"-?\d+\.\d{2}%")


def tables(card: str) -> dict[str, list[dict[str, str]]]:
    """Each Markdown table of the card under the heading it follows (the first table of a section only):
    heading text -> rows as {column: cell}."""
    found: dict[str, list[dict[str, str]]] = {}
    heading, lines = "", card.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("|") and heading not in found:
            header = _cells(line)
            rows = []
            index += 2  # the separator row
            while index < len(lines) and lines[index].startswith("|"):
                rows.append(dict(zip(header, _cells(lines[index]), strict=True)))
                index += 1
            found[heading] = rows
            continue
        index += 1
    return found


def number(cell: str) -> float:
    """A figure as written by digitops.card: '99.35%' -> 99.35, '-3.21 pp' -> -3.21, '15,303' -> 15303."""
    return float(cell.removesuffix("%").removesuffix(" pp").replace(",", ""))


def share(cell: str, value: float) -> bool:
    """Whether a percentage cell is `value` (a share in [0, 1]) as the card rounds it."""
    return abs(number(cell) - 100 * value) <= 0.005 + 1e-9


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]
