"""Fast, precise parsing helpers for reader plugins.

Columns are converted with numpy in one pass; only when that fails is the offending row searched
for, so a bad file still gets an error naming its file, line and problem.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eclsr.components.readers import Interactions
from eclsr.errors import DataError

#: A UTF-8 byte-order mark some editors write at the start of a file: not part of the first id.
BOM = b"\xef\xbb\xbf"
#: How an integer token must look: digits, an optional minus. Python's ``int`` (and numpy) also
#: accept ``1_000``, `` 7`` and ``+7``, which another reader keeps as text: one rule for all.
_INTEGER = re.compile(rb"-?[0-9]+")
#: Text that is a missing value written out (pandas writes NaN ids as "nan"), not an id.
_NULL_TEXT = frozenset({"", "nan", "none", "null", "<na>"})


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
    try:
        raw = path.read_bytes().removeprefix(BOM).splitlines()[skip:]
    except OSError as exc:
        msg = f"data file {str(path)!r} cannot be read ({exc.strerror}); check its permissions."
        raise DataError(msg) from None
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
        values = tokens.astype(dtype)
    except (ValueError, OverflowError):
        values = None
    if values is not None and (dtype is not np.int64 or _plain_integers(tokens)):
        return values
    kind = "an integer" if dtype is np.int64 else "a number"
    for index, token in enumerate(tokens.tolist()):
        try:
            if dtype is np.int64 and not _is_integer(token):
                raise ValueError(token)
            dtype(token) if dtype is not np.int64 else int(token)
        except (ValueError, OverflowError):
            where = f"{path}:{numbers[index]}" if numbers is not None else f"{path} row {index}"
            msg = f"{where}: column {name!r} must be {kind}, got {_show(token)}."
            raise DataError(msg) from None
    if values is not None:
        return values
    msg = f"{path}: column {name!r} could not be read as {kind}."
    raise DataError(msg)


def _plain_integers(tokens: np.ndarray) -> bool:
    """True when no token uses a form ``int`` accepts but the id rule does not (vectorised)."""
    if tokens.dtype.kind not in "SU":
        return tokens.dtype.kind in "iu"
    marks = (b"_", b"+", b" ") if tokens.dtype.kind == "S" else ("_", "+", " ")
    return not any((np.char.find(tokens, mark) >= 0).any() for mark in marks)


def _is_integer(token: object) -> bool:
    """True for the digits-only integer tokens of the id rule (no ``_``, ``+`` or spaces)."""
    if isinstance(token, (int, np.integer)):
        return True
    raw = token.encode("utf-8", errors="replace") if isinstance(token, str) else bytes(token)  # type: ignore[arg-type]
    return _INTEGER.fullmatch(raw) is not None


def canonical_ids(
    values: np.ndarray, lines: np.ndarray | None, source: str, role: str
) -> np.ndarray:
    """The one id rule of every reader: an id is its text, exactly as written.

    Surrounding whitespace and a byte-order mark are not part of it; integers a binary format
    stores are written in decimal. ``007`` and ``7`` are therefore two ids (reported when both
    occur). A missing id (None, NaN, empty, or written out as ``nan``/``null``/``None``) is
    refused with its line, and so is a fractional number used as an id.

    Returns:
        ``[n]`` int64 when every id is an integer value, else ``[n]`` str.
    """
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
        if bad.size:
            _refuse_id(values[bad[0]], int(bad[0]), lines, source, role)
        return values.astype(np.int64)
    if values.dtype.kind == "S":
        text = np.char.strip(np.char.decode(values, "utf-8", errors="replace"))
    else:
        text = np.asarray([_id_text(v) for v in values.tolist()], dtype=str)
        text = np.char.strip(text)
    text = np.char.lstrip(text, "\ufeff") if text.size else text
    missing = np.flatnonzero(np.isin(np.char.lower(text), list(_NULL_TEXT))) if text.size else []
    if len(missing):
        first = int(missing[0])
        _refuse_id(values[first], first, lines, source, role)
    _report_same_number(text, lines, source, role)
    return text


def _id_text(value: object) -> str:
    """One raw id of an object column as text (None and NaN become '' and are refused)."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _refuse_id(value: object, row: int, lines: np.ndarray | None, source: str, role: str) -> None:
    where = f"{source}:{lines[row]}" if lines is not None else f"{source} row {row}"
    msg = (
        f"{where}: the {role} id {_show(str(value))} is missing or not an id (ids are text or "
        "whole numbers; a null, NaN, empty or fractional id is not). Fill it in or drop the row."
    )
    raise DataError(msg)


def _report_same_number(text: np.ndarray, lines: np.ndarray | None, source: str, role: str) -> None:
    """Warn when two different ids are the same integer (``007`` and ``7``): they stay apart."""
    if not text.size:
        return
    digits = np.char.isdigit(np.char.lstrip(text, "-"))
    if not digits.any() or digits.all() and not np.char.startswith(text, "0").any():
        return  # no leading zeros possible: the fast common case
    uniq, first = np.unique(text[digits], return_index=True)
    rows = np.flatnonzero(digits)[first]
    values = [int(t) for t in uniq.tolist()]
    seen: dict[int, int] = {}
    for index, value in enumerate(values):
        if value in seen:
            a, b = seen[value], index
            where = f"lines {lines[rows[a]]} and {lines[rows[b]]}" if lines is not None else "rows"
            warnings.warn(
                f"{source}: {role} ids {str(uniq[a])!r} and {str(uniq[b])!r} ({where}) are the same number "
                "written differently; they are kept as two different ids (an id is its text). "
                "Write every id the same way if they are one.",
                stacklevel=3,
            )
            return
        seen[value] = index


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
