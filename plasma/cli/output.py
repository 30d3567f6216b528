"""Where a command's result goes: with --json, one JSON document on stdout; otherwise tables, drawn with rich on a
terminal and as aligned plain text (no escape codes) into a pipe, a file or a CI log."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from plasma.sdk.table import Table


def is_terminal(stream: TextIO) -> bool:
    # TERM=dumb (Emacs shells, some CI runners) says escape codes are not understood.
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def show(as_json: bool, document: Any, tables: Sequence[Table]) -> int:
    """Prints `document` (with --json) or `tables` on stdout; 0, the command's exit status."""
    if as_json:
        print(json.dumps(document, indent=2))
    elif is_terminal(sys.stdout):
        draw(tables, sys.stdout)
    else:
        print("\n".join(table.plain() for table in tables))
    return 0


def draw(tables: Sequence[Table], stream: TextIO) -> None:
    console = Console(file=stream)
    for table in tables:
        drawn = RichTable(title=table.title, title_justify="left", title_style="bold",
                          show_header=any(table.columns), box=box.SIMPLE_HEAD)
        for i, column in enumerate(table.columns):
            drawn.add_column(column, justify="right" if i in table.numeric else "left",
                             style="bold" if i == 0 and not any(table.columns) else None)
        for row in table.rows:
            drawn.add_row(*(Text(cell) for cell in row))  # Text: a value is never read as rich markup
        console.print(drawn)
        for note in table.notes:
            console.print(Text(f"  {note}"))
