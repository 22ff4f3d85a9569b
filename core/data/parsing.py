"""Fast, precise parsing helpers for reader plugins.

Columns are converted with numpy in one pass; only when that fails is the offending row searched
for, so a bad file still gets an error naming its file, line and problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eclsr.components.readers import Interactions
from eclsr.errors import DataError


def require_file(path: Path) -> None:
    """Raise a DataError when ``path`` is not an existing file."""
    if not path.is_file():
        msg = f"data file {str(path)!r} does not exist. Check the path, or set data.data_dir / ECLSR_DATA_DIR to the folder holding it."
        raise DataError(msg)


def head_lines(path: Path, count: int = 20) -> list[str]:
    """The first ``count`` non-blank lines of a text file (for format sniffing)."""
    lines: list[str] = []
    with path.open("rb") as handle:
        for raw in handle:
            text = raw.decode("utf-8", errors="replace").strip()
            if text:
                lines.append(text)
            if len(lines) >= count:
                break
    return lines


def read_lines(path: Path, skip: int = 0) -> tuple[list[bytes], np.ndarray, int]:
    """Non-blank lines of ``path`` after the first ``skip`` lines.

    Returns:
        lines (stripped bytes), their 1-based line numbers ``[n]`` int64, and the count of blank
        lines skipped.
    """
    require_file(path)
    raw = path.read_bytes().splitlines()[skip:]
    keep = [i for i, line in enumerate(raw) if line.strip()]
    lines = [raw[i].strip() for i in keep]
    numbers = np.asarray(keep, dtype=np.int64) + 1 + skip
    return lines, numbers, len(raw) - len(keep)


def split_rows(
    lines: list[bytes], numbers: np.ndarray, sep: bytes | None, width: int, path: Path, layout: str
) -> list[tuple[bytes, ...]]:
    """Split each line on ``sep`` into exactly ``width`` fields; return the columns.

    Args:
        lines: stripped non-blank lines.
        numbers: ``[n]`` their line numbers.
        sep: the separator (None: any whitespace).
        width: the required number of fields.
        path: the file, for messages.
        layout: the expected line layout, for messages (e.g. ``"user::item::rating::timestamp"``).
    """
    rows = [line.split(sep) for line in lines]
    counts = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    bad = np.flatnonzero(counts != width)
    if bad.size:
        first = int(bad[0])
        msg = (
            f"{path}:{numbers[first]}: expected {width} fields laid out as {layout!r}, got "
            f"{counts[first]} in {_show(lines[first])} ({bad.size} malformed line(s) in all)."
        )
        raise DataError(msg)
    return list(zip(*rows, strict=True)) if rows else [() for _ in range(width)]


def to_numbers(
    column: Sequence[bytes | str], dtype: type, numbers: np.ndarray | None, path: Path, name: str
) -> np.ndarray:
    """Convert a column of tokens to ``dtype`` (int64 or float64), naming the first bad line."""
    tokens = np.asarray(column)
    try:
        return tokens.astype(dtype)
    except (ValueError, OverflowError):
        pass
    kind = "an integer" if dtype is np.int64 else "a number"
    for index, token in enumerate(tokens.tolist()):
        try:
            dtype(token) if dtype is not np.int64 else int(token)
        except (ValueError, OverflowError):
            where = f"{path}:{numbers[index]}" if numbers is not None else f"{path} row {index}"
            msg = f"{where}: column {name!r} must be {kind}, got {_show(token)}."
            raise DataError(msg) from None
    msg = f"{path}: column {name!r} could not be read as {kind}."
    raise DataError(msg)


def _show(token: bytes | str) -> str:
    text = token.decode("utf-8", errors="replace") if isinstance(token, bytes) else str(token)
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


ROLES = ("user", "item", "timestamp", "rating")
#: Column names recognised per role when ``data.columns`` does not name one (case-insensitive,
#: RecBole's ``:type`` suffix ignored).
KNOWN_COLUMNS: dict[str, tuple[str, ...]] = {
    "user": ("user_id", "userid", "user", "uid", "reviewerid", "customer_id"),
    "item": ("item_id", "itemid", "movieid", "item", "iid", "product_id", "asin", "business_id"),
    "timestamp": ("timestamp", "time", "ts", "unix_time", "unixreviewtime", "datetime"),
    "rating": ("rating", "ratings", "score", "stars", "overall"),
}


def pick_columns(header: Sequence[str], mapping: dict[str, str], path: Path) -> dict[str, int]:
    """Map each role to a column index: the explicit ``mapping`` first, then known names.

    Raises:
        DataError: an unknown role, a mapped column missing from the header, or no user/item column.
    """
    bare = [h.split(":")[0].strip().lower() for h in header]
    unknown = sorted(set(mapping) - set(ROLES))
    if unknown:
        msg = f"data.columns has unknown role(s) {unknown}; valid roles are {list(ROLES)}."
        raise DataError(msg)
    found: dict[str, int] = {}
    for role in ROLES:
        if role in mapping:
            wanted = mapping[role].split(":")[0].strip().lower()
            if wanted not in bare:
                msg = f"{path}: column {mapping[role]!r} (data.columns.{role}) is not in the header {list(header)}."
                raise DataError(msg)
            found[role] = bare.index(wanted)
            continue
        for name in KNOWN_COLUMNS[role]:
            if name in bare:
                found[role] = bare.index(name)
                break
    for role in ("user", "item"):
        if role not in found:
            msg = (
                f"{path}: no {role} column in the header {list(header)}. Name it with "
                f'data.columns = {{{role} = "<column>"}} (recognised names: {", ".join(KNOWN_COLUMNS[role])}).'
            )
            raise DataError(msg)
    return found


def interactions_from_columns(
    columns: Sequence[Sequence[object]],
    roles: dict[str, int],
    numbers: np.ndarray | None,
    path: Path,
    names: Sequence[str],
) -> Interactions:
    """Build :class:`Interactions` from parsed columns and the role → column-index mapping.

    Without a timestamp column the rows of each user are taken to be in chronological file order.
    """

    def number(role: str) -> np.ndarray | None:
        if role not in roles:
            return None
        index = roles[role]
        return to_numbers(columns[index], np.float64, numbers, path, names[index])

    users = np.asarray(columns[roles["user"]])
    items = np.asarray(columns[roles["item"]])
    for role, values in (("user", users), ("item", items)):
        empty = (
            np.flatnonzero(values == values[:0].dtype.type()) if values.dtype.kind in "SU" else []
        )
        if len(empty):
            where = (
                f"{path}:{numbers[empty[0]]}" if numbers is not None else f"{path} row {empty[0]}"
            )
            msg = f"{where}: empty {role} id in column {names[roles[role]]!r}."
            raise DataError(msg)
    timestamps = number("timestamp")
    return Interactions(
        users=users,
        items=items,
        timestamps=timestamps,
        ratings=number("rating"),
        lines=numbers,
        source=str(path),
        chronological=timestamps is None,
    )


def read_delimited(
    path: Path,
    delimiter: str | None,
    columns: dict[str, str],
    header: bool = True,
    names: Sequence[str] | None = None,
) -> Interactions:
    """Read a delimited text table (CSV, TSV, RecBole ``.inter``) into interactions.

    Args:
        path: the file.
        delimiter: the field separator; None sniffs ``,`` ``\\t`` ``;`` ``|`` from the first line.
        columns: role → column name (``user``, ``item``, ``timestamp``, ``rating``).
        header: whether the first non-blank line names the columns.
        names: column names when there is no header.
    """
    lines, numbers, _ = read_lines(path)
    if not lines:
        msg = f"data file {str(path)!r} is empty."
        raise DataError(msg)
    sep = (delimiter or _sniff_delimiter(lines[0])).encode()
    if header:
        head, lines, numbers = _split_one(lines[0], sep), lines[1:], numbers[1:]
    elif names:
        head = list(names)
    else:
        msg = f"{path}: without a header row the reader needs column names (reader option 'names')."
        raise DataError(msg)
    roles = pick_columns(head, columns, path)
    layout = sep.decode().join(head)
    if any(b'"' in line for line in lines):
        table = _split_quoted(lines, numbers, sep.decode(), len(head), path, layout)
    else:
        table = split_rows(lines, numbers, sep, len(head), path, layout)
    if not lines:
        msg = f"{path}: the file has a header but no rows."
        raise DataError(msg)
    return interactions_from_columns(table, roles, numbers, path, head)


def _sniff_delimiter(first: bytes) -> str:
    counts = {d: first.count(d.encode()) for d in ("\t", ",", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _split_one(line: bytes, sep: bytes) -> list[str]:
    import csv

    return next(csv.reader([line.decode("utf-8", errors="replace")], delimiter=sep.decode()))


def _split_quoted(
    lines: list[bytes], numbers: np.ndarray, sep: str, width: int, path: Path, layout: str
) -> list[tuple[str, ...]]:
    import csv

    rows = list(
        csv.reader((line.decode("utf-8", errors="replace") for line in lines), delimiter=sep)
    )
    for index, row in enumerate(rows):
        if len(row) != width:
            msg = f"{path}:{numbers[index]}: expected {width} fields laid out as {layout!r}, got {len(row)}."
            raise DataError(msg)
    return list(zip(*rows, strict=True))
