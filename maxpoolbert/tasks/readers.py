"""Readers: one small function per file format, each turning a data file into numbered records.

A reader takes the file and, for a file without a header line, the names of its fields; it
returns the field names it found (``None`` when each record names its own, as in JSONL) and an
iterator of ``(line number, record)``, where a record maps field names to raw values. A line that
cannot be a record is a :class:`BadRecord` in the stream (the task decides whether to skip it or
to stop), and a file that cannot be read at all is a :class:`~maxpoolbert.core.errors.UserError` naming
the file and line. What the fields mean (text, label) is the task's business
(:mod:`maxpoolbert.tasks.task`), not the reader's. To add a format: a function here and its name in
:data:`READERS`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from maxpoolbert.core.errors import UserError

Records = Iterator[tuple[int, "dict[str, Any] | BadRecord"]]


class BadRecord:
    """A line that is not a record: its problem, in words."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


def read_text(path: Path) -> str:
    """A UTF-8 text file (a BOM is dropped, line ends are kept); any other encoding is refused
    with the first line that is not UTF-8."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 (byte 0x{raw[err.start]:02x})",
                        allowed="UTF-8 text (convert it, e.g. iconv -f latin1 -t utf-8)") from None


def _lines(path: Path) -> list[str]:
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _delimited(rows: Iterator[tuple[int, list[str]]], path: Path, fields: list[str] | None
               ) -> tuple[list[str], Records]:
    """Records from rows of cells: named by ``fields``, or by the first row (the header)."""
    if fields is None:
        first = next(rows, None)
        if first is None:
            raise UserError(f"{path} is empty", allowed="a header line, then one line per row")
        fields = first[1]
    header = list(fields)

    def records() -> Records:
        for lineno, cells in rows:
            if len(cells) != len(header):
                yield lineno, BadRecord(f"malformed row, {len(cells)} fields where the header has {len(header)}")
            else:
                yield lineno, dict(zip(header, cells, strict=True))

    return header, records()


def read_tsv(path: Path, fields: list[str] | None = None) -> tuple[list[str], Records]:
    """Tab-separated values, split on tabs only: GLUE text has unbalanced quotes, so no quoting."""
    rows = ((n, line.split("\t")) for n, line in enumerate(_lines(path), start=1))
    return _delimited(rows, path, fields)


def read_csv(path: Path, fields: list[str] | None = None) -> tuple[list[str], Records]:
    """Comma-separated values with the usual quoting (Python's ``csv``, Excel dialect); a quoted
    field may span lines, and the line number is the record's first line."""
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))

    def rows() -> Iterator[tuple[int, list[str]]]:
        start = 1
        try:
            for cells in reader:
                if cells:  # csv yields [] for a blank line
                    yield start, cells
                start = reader.line_num + 1
        except csv.Error as err:
            raise UserError(f"{path}:{reader.line_num}: not CSV ({err})",
                            allowed="comma-separated values, quoted with double quotes") from None

    return _delimited(rows(), path, fields)


def read_jsonl(path: Path, fields: list[str] | None = None) -> tuple[None, Records]:
    """JSON Lines: one JSON object per line (blank lines are ignored); each names its fields."""
    lines = _lines(path)

    def records() -> Records:
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                yield lineno, BadRecord(f"not JSON ({err.msg} at column {err.colno})")
                continue
            if not isinstance(record, dict):
                yield lineno, BadRecord(f"a JSON {type(record).__name__}, not an object")
                continue
            yield lineno, record

    return None, records()


READERS: dict[str, Callable[..., tuple[list[str] | None, Records]]] = {
    "tsv": read_tsv,
    "csv": read_csv,
    "jsonl": read_jsonl,
}
