"""Fitting a table to the console without splitting a cell.

A cell is never wrapped (a number, interval or time stays on one line), except in the
free-text ``wrap`` columns, which wrap at spaces. When the table is wider than the console,
columns are left out: the table's ``drop_first`` ones in order, then from the right, never
the first column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table


def build_table(
    title: str | None,
    names: Sequence[str],
    cells: Sequence[Mapping[str, str]],
    labels: Mapping[str, str],
    wrap: Sequence[str] = (),
) -> Table:
    """The rich table of ``cells`` (text per column name) under the headers ``labels``."""
    table = Table(
        title=title,
        header_style="bold",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        show_edge=False,
    )
    for name in names:
        if name in wrap:
            table.add_column(labels.get(name, name), overflow="fold")
        else:
            table.add_column(labels.get(name, name), no_wrap=True, overflow="ellipsis")
    for row in cells:
        table.add_row(*(row[name] for name in names))
    return table


@dataclass(frozen=True)
class Fit:
    """The columns shown, and the console width every column would need."""

    shown: list[str]
    full_width: int


def _widest(texts: Sequence[str]) -> str:
    return max(texts, key=cell_len, default="")


def _longest_word(text: str) -> str:
    return _widest(text.split())


def fit_columns(
    console: Console,
    names: Sequence[str],
    cells: Sequence[Mapping[str, str]],
    labels: Mapping[str, str],
    drop_first: Sequence[str] = (),
    wrap: Sequence[str] = (),
) -> Fit:
    """Which of ``names`` fit ``console.width`` with no cell split (see the module)."""
    # the one cell (and header) per column that decides its width
    needs = {
        name: _widest([_longest_word(row[name]) for row in cells])
        if name in wrap
        else _widest([row[name] for row in cells])
        for name in names
    }
    heads = {name: labels.get(name, name) for name in names}
    heads.update({name: _longest_word(heads[name]) for name in wrap})

    def width(shown: Sequence[str]) -> int:
        table = build_table(None, shown, [needs], heads)
        return Measurement.get(console, console.options.update(width=10**6), table).maximum

    shown = list(names)
    order = [name for name in drop_first if name in shown]
    order += [name for name in reversed(shown[1:]) if name not in order]
    full_width = width(shown)
    current = full_width
    while len(shown) > 1 and current > console.width:
        shown.remove(order.pop(0))
        current = width(shown)
    return Fit(shown, full_width)
