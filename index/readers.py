"""Read delimited, JSONL and Parquet files as rows that remember their line numbers.

Every problem becomes a DataError naming the file and line, so a user can open the file and fix it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from core.errors import DataError

Row = tuple[int, dict[str, Any]]


def _decoded_lines(path: Path, encoding: str) -> Iterator[str]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise DataError(path, f"not valid {encoding} text ({exc.reason} at byte {exc.start}); "
                                      f"set the file's encoding", line=number) from None


def read_delimited(path: Path, *, delimiter: str = ",", encoding: str = "utf-8",
                   columns: Sequence[str] | None = None, required: Sequence[str] = ()) -> Iterator[Row]:
    """Yield (line number, row) from a CSV/TSV file.

    With `columns` the file has no header and rows must have exactly that many fields; otherwise the
    first line is the header and must contain every name in `required`.
    """
    if not path.exists():
        raise DataError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataError(path, "file is empty")
    lines = _decoded_lines(path, encoding)
    reader = csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter != "," else
                        csv.QUOTE_MINIMAL)
    header: list[str]
    if columns is None:
        try:
            header = [name.strip().lstrip("\ufeff") for name in next(reader)]
        except StopIteration:
            raise DataError(path, "file is empty") from None
        missing = [name for name in required if name not in header]
        if missing:
            raise DataError(path, f"missing column(s) {', '.join(missing)}; header has "
                                  f"{', '.join(header)}", line=1)
    else:
        header = list(columns)
    count = 0
    for fields in reader:
        number = reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) != len(header):
            raise DataError(path, f"expected {len(header)} fields, found {len(fields)}", line=number)
        count += 1
        yield number, dict(zip(header, fields, strict=True))
    if count == 0:
        raise DataError(path, "file has no data rows")


def read_jsonl(path: Path, *, required: Sequence[str] = ()) -> Iterator[Row]:
    if not path.exists():
        raise DataError(path, "file not found")
    count = 0
    for number, line in enumerate(_decoded_lines(path, "utf-8"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"invalid JSON: {exc.msg}", line=number) from None
        if not isinstance(row, dict):
            raise DataError(path, "each line must be a JSON object", line=number)
        missing = [name for name in required if name not in row]
        if missing:
            raise DataError(path, f"missing field(s) {', '.join(missing)}", line=number)
        count += 1
        yield number, row
    if count == 0:
        raise DataError(path, "file has no data rows")


def read_parquet(path: Path, *, required: Sequence[str] = ()) -> Iterator[Row]:
    """Parquet has no lines; the number reported is the 1-based row number."""
    import pyarrow.parquet as pq

    if not path.exists():
        raise DataError(path, "file not found")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(path, f"cannot read Parquet: {exc}") from None
    missing = [name for name in required if name not in table.column_names]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(missing)}; file has "
                              f"{', '.join(table.column_names)}")
    if table.num_rows == 0:
        raise DataError(path, "file has no data rows")
    yield from enumerate(table.to_pylist(), start=1)


def read_table(path: Path, *, required: Sequence[str] = (), delimiter: str | None = None,
               encoding: str = "utf-8") -> Iterator[Row]:
    """Pick the reader from the file's suffix: .csv/.tsv/.dat, .jsonl/.json, .parquet."""
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".json", ".ndjson"}:
        return read_jsonl(path, required=required)
    if suffix in {".parquet", ".pq"}:
        return read_parquet(path, required=required)
    if delimiter is None:
        delimiter = "\t" if suffix in {".tsv", ".dat"} else ","
    return read_delimited(path, delimiter=delimiter, encoding=encoding, required=required)


def parse_int(path: Path, line: int, column: str, value: Any) -> int:
    try:
        return int(float(value)) if isinstance(value, str) and "." in value else int(value)
    except (TypeError, ValueError):
        raise DataError(path, f"column {column!r}: {value!r} is not an integer", line=line) from None


def parse_float(path: Path, line: int, column: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(path, f"column {column!r}: {value!r} is not a number", line=line) from None


def columns_of(path: Path, encoding: str = "utf-8") -> list[str]:
    """The column names of a table file (header, first JSON object, or Parquet schema); [] if unreadable."""
    suffix = path.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        with path.open(encoding=encoding, newline="") as handle:
            first = handle.readline()
        if suffix in {".jsonl", ".json", ".ndjson"}:
            row = json.loads(first)
            return list(row) if isinstance(row, dict) else []
        delimiter = "\t" if suffix in {".tsv", ".dat"} else ","
        return [name.strip().lstrip("\ufeff") for name in next(csv.reader([first], delimiter=delimiter))]
    except (OSError, ValueError, StopIteration):
        return []
