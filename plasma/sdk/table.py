"""A table as plain data: the CLI draws it with rich on a terminal and as aligned text anywhere else."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    # Columns of figures, aligned right.
    numeric: frozenset[int] = frozenset()
    # Lines printed under the table.
    notes: tuple[str, ...] = field(default=())

    def plain(self) -> str:
        """The title, the header and the rows as aligned text (no escape codes), then the notes."""
        widths = [max([len(self.columns[i])] + [len(row[i]) for row in self.rows]) for i in range(len(self.columns))]

        def line(cells: tuple[str, ...]) -> str:
            return "  " + "  ".join(cell.rjust(w) if i in self.numeric else cell.ljust(w)
                                    for i, (cell, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

        header = [line(self.columns)] if any(self.columns) else []
        return "\n".join([self.title, *header, *(line(row) for row in self.rows), *(f"  {n}" for n in self.notes)])


def key_values(title: str, pairs: Sequence[tuple[str, str]], notes: tuple[str, ...] = ()) -> Table:
    """A two-column table of labels and values, with no header."""
    return Table(title, ("", ""), pairs, notes=notes)
