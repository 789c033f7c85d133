"""How the library's results show themselves: a small table, as plain text (``repr``, a terminal)
and as HTML (a notebook's ``_repr_html_``), from the same cells."""

from __future__ import annotations

import html
from dataclasses import dataclass, field


@dataclass
class Table:
    """A title, a header, rows of cells already formatted as text, and notes under them.

    ``left`` names the columns aligned left (text); the others are numbers, aligned right.
    """

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]
    notes: list[str] = field(default_factory=list)
    left: tuple[str, ...] = ()

    def text(self) -> str:
        widths = [max([len(c)] + [len(row[i]) for row in self.rows])
                  for i, c in enumerate(self.columns)]

        def line(cells):
            return "  ".join(cell.ljust(w) if name in self.left else cell.rjust(w)
                             for cell, w, name in zip(cells, widths, self.columns)).rstrip()
        lines = ([self.title] if self.title else []) + [line(self.columns)]
        return "\n".join(lines + [line(row) for row in self.rows] + self.notes)

    def html(self) -> str:
        def cell(tag, text, name):
            align = "left" if name in self.left else "right"
            return f'<{tag} style="text-align: {align}">{html.escape(text)}</{tag}>'
        head = "".join(cell("th", c, c) for c in self.columns)
        body = "".join("<tr>" + "".join(cell("td", text, name)
                                        for text, name in zip(row, self.columns)) + "</tr>"
                       for row in self.rows)
        caption = (f'<caption style="text-align: left">{html.escape(self.title)}</caption>'
                   if self.title else "")
        notes = "".join(f"<p>{html.escape(note)}</p>" for note in self.notes)
        return (f"<div><table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
                f"</table>{notes}</div>")


def joined_text(*tables: Table) -> str:
    return "\n\n".join(t.text() for t in tables)


def joined_html(*tables: Table) -> str:
    return "".join(t.html() for t in tables)
