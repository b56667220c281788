"""Texts, and optionally their labels, from a .txt (one text per line) or .csv file, with clear errors.

    table = read_table("reviews.csv")                  # ValueError: too big, binary, not UTF-8, no header...
    texts, labels, notes = select_texts(table, "review", "sentiment", max_rows=200)

Shared by the app's Classify tab and anything else that reads texts to classify, so a bad file gets
the same message everywhere.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

MAX_BYTES = 5 * 2**20  # default size limit of a file
TEXT_COLUMN_NAMES = ("text", "review", "sentence", "content", "document", "comment", "body")  # guessed, in order
LABEL_COLUMN_NAMES = ("label", "labels", "sentiment", "class", "category", "target", "gold")


@dataclass
class Table:
    """An uploaded file as rows of strings: a .txt is one column, "text"."""

    columns: list[str]
    rows: list[list[str]]
    name: str  # the file's name, for messages


def read_table(path: str | Path, max_bytes: int = MAX_BYTES) -> Table:
    """Read a .txt (one text per line) or .csv (with a header row); ValueError for anything else."""
    path = Path(path)
    name = path.name
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{name} is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:g} MB per file")
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".csv"):
        raise ValueError(f"{name}: upload a .txt (one text per line) or a .csv with a header row")
    data = path.read_bytes()
    if b"\x00" in data[:65536]:
        raise ValueError(f"{name} looks like a binary file, not text: upload a .txt or .csv saved as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{name} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start:,}); "
            "save it as UTF-8 and upload it again"
        ) from None
    if suffix == ".txt":
        rows = [[line.strip()] for line in text.splitlines() if line.strip()]
        if not rows:
            raise ValueError(f"{name} has no text: write one text per line")
        return Table(["text"], rows, name)
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        records = [row for row in csv.reader(io.StringIO(text), dialect) if any(cell.strip() for cell in row)]
    except csv.Error as error:
        raise ValueError(f"{name} is not a readable CSV: {error}") from None
    if len(records) < 2:
        raise ValueError(f"{name} needs a header row and at least one row of data")
    columns = [c.strip() or f"column {i + 1}" for i, c in enumerate(records[0])]
    if len(set(columns)) != len(columns):
        raise ValueError(f"{name} has repeated column names: {columns}")
    width = len(columns)
    for number, row in enumerate(records[1:], start=2):
        if any(cell.strip() for cell in row[width:]):
            raise ValueError(
                f"{name}: line {number} has {len(row)} cells but the header has {width}; "
                "put texts that contain the delimiter in double quotes"
            )
    rows = [(row + [""] * width)[:width] for row in records[1:]]  # short rows: missing cells are empty
    return Table(columns, rows, name)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def text_columns(table: Table) -> list[str]:
    """Columns that hold text (not only numbers or blanks)."""
    found = []
    for i, column in enumerate(table.columns):
        cells = [row[i].strip() for row in table.rows if row[i].strip()]
        if cells and not all(_is_number(cell) for cell in cells):
            found.append(column)
    return found


def guess_text_column(table: Table) -> str | None:
    """A column named like text, else the text column with the longest cells; None if there is none."""
    candidates = text_columns(table)
    for column in candidates:
        if column.strip().lower() in TEXT_COLUMN_NAMES:
            return column
    if not candidates:
        return None
    characters = {c: sum(len(row[table.columns.index(c)]) for row in table.rows) for c in candidates}
    return max(candidates, key=characters.get)


def guess_label_column(table: Table) -> str | None:
    for column in table.columns:
        if column.strip().lower() in LABEL_COLUMN_NAMES:
            return column
    return None


def select_texts(
    table: Table, text_column: str | None = None, label_column: str | None = None, max_rows: int | None = None
) -> tuple[list[str], list[str] | None, list[str]]:
    """(texts, true labels or None, notes for the user) from a table, at most `max_rows` of them.

    text_column None: guessed (`guess_text_column`); label_column None: no labels.
    """
    notes = []
    if not text_column:
        text_column = guess_text_column(table)
        if text_column is None:
            raise ValueError(
                f"{table.name} has no text column: every column holds numbers or is empty "
                f"(columns: {table.columns}); add a column with the texts"
            )
    if text_column not in table.columns:
        raise ValueError(f"{table.name} has no column {text_column!r}; its columns are {table.columns}")
    if label_column and label_column not in table.columns:
        raise ValueError(f"{table.name} has no column {label_column!r}; its columns are {table.columns}")
    if label_column == text_column:
        raise ValueError("the label column cannot be the text column")
    ti = table.columns.index(text_column)
    li = table.columns.index(label_column) if label_column else None
    rows = [row for row in table.rows if row[ti].strip()]
    if len(rows) < len(table.rows):
        notes.append(f"{len(table.rows) - len(rows)} row(s) with an empty {text_column!r} were skipped.")
    if not rows:
        raise ValueError(f"the column {text_column!r} of {table.name} is empty")
    if max_rows is not None and len(rows) > max_rows:
        notes.append(f"{table.name} has {len(rows):,} texts; only the first {max_rows} are used (the limit per request).")
        rows = rows[:max_rows]
    texts = [row[ti].strip() for row in rows]
    labels = [row[li].strip() for row in rows] if li is not None else None
    return texts, labels, notes
