"""Plain-text tables for the library's reports (compress, export, tuning)."""

from typing import Optional, Sequence

__all__ = ["format_table"]


def format_table(rows: Sequence[Sequence[str]], align: Optional[str] = None, rule: bool = True,
                 indent: str = "") -> list[str]:
  """The rows (the first is the header) as aligned lines of text.

  Args:
    rows: cells as strings, every row as long as the header.
    align: one letter per column, "l" (left) or "r" (right); default: the first column left,
      the others right.
    rule: put a line of dashes under the header.
    indent: prefix of every line.
  """
  columns = len(rows[0])
  align = align or "l" + "r" * (columns - 1)
  widths = [max(len(row[i]) for row in rows) for i in range(columns)]
  lines = [indent + "  ".join(cell.ljust(w) if a == "l" else cell.rjust(w)
                              for cell, w, a in zip(row, widths, align)).rstrip()
           for row in rows]
  if rule:
    lines.insert(1, indent + "  ".join("-" * w for w in widths))
  return lines
