"""``eclsr data stats | download | list``: handlers take ``(args, console)`` and return an exit code.

User mistakes raise ``eclsr.DataError``; the main CLI prints them and exits with 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from eclsr.data.catalogue import CATALOGUE, data_dir, lookup
from eclsr.data.config import DataConfig
from eclsr.data.loader import load_dataset
from eclsr.errors import DataError


def add_data_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data stats``, ``data download`` and ``data list`` to the ``eclsr`` parser."""
    data = subparsers.add_parser("data", help="inspect and download datasets")
    sub = data.add_subparsers(dest="data_command", required=True, parser_class=type(data))
    stats = sub.add_parser("stats", help="users, items, actions, lengths, sparsity (Table 2)")
    stats.add_argument("source", help="catalogue name or file path")
    stats.add_argument("--format", default=None, help="reader name (default: auto)")
    stats.add_argument("--k-core", type=int, default=None, help="k-core threshold (0 disables)")
    stats.add_argument("--rating-threshold", type=float, default=None, help="keep rating >= this")
    stats.add_argument("--dedupe", choices=["all", "first", "last"], default=None)
    stats.add_argument("--min-length", type=int, default=1, help="drop shorter users (default 1)")
    stats.add_argument("--data-dir", default=None, help="folder of named datasets")
    stats.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(handler=cmd_data_stats)
    download = sub.add_parser("download", help="fetch a catalogue dataset (checksum-verified)")
    download.add_argument("name", help="catalogue name")
    download.add_argument("--data-dir", default=None, help="destination folder")
    download.add_argument("--url", default=None, help="download from this URL instead (a mirror)")
    download.add_argument("--timeout", type=float, default=60.0, help="network timeout, seconds")
    download.set_defaults(handler=cmd_data_download)
    listing = sub.add_parser("list", help="list the dataset catalogue")
    listing.add_argument("--data-dir", default=None, help="folder of named datasets")
    listing.set_defaults(handler=cmd_data_list)


def cmd_data_stats(args: argparse.Namespace, out: Console) -> int:
    """Print the statistics of a prepared dataset."""
    options: dict[str, Any] = {"dataset": args.source, "min_length": args.min_length}
    flags = {
        "reader": {"name": args.format} if args.format else None,
        "k_core": args.k_core,
        "rating_threshold": args.rating_threshold,
        "dedupe": args.dedupe,
        "data_dir": args.data_dir,
    }
    options |= {k: v for k, v in flags.items() if v is not None}
    if args.no_cache:
        options["cache"] = False
    try:
        config = DataConfig(**options)
    except ValidationError as exc:
        msg = f"invalid option: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
        raise DataError(msg) from None
    data = load_dataset(config)
    facts = data.protocol
    if args.json:
        out.print_json(json.dumps({"source": args.source, **facts}, default=str))
        return 0
    default_run = all(v is None for k, v in flags.items() if k != "data_dir")
    expected = CATALOGUE[args.source].expected if args.source in CATALOGUE and default_run else {}
    out.print(_stats_table(data.name, facts["stats"], expected))
    counts = ", ".join(f"{k}: {v:,}" for k, v in facts.get("counts", {}).items())
    out.print(f"rows: {counts}", highlight=False)
    return 0


def _stats_table(name: str, stats: dict[str, Any], expected: dict[str, int]) -> Table:
    table = Table(title=f"{name}")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    if expected:
        table.add_column("catalogue", justify="right")
    for key, value in stats.items():
        text = (
            f"{value:,}"
            if isinstance(value, int)
            else f"{value:.4f}"
            if key == "avg_length"
            else f"{value:.6f}"
        )
        row = [key, text]
        if expected:
            want = expected.get(key)
            mark = (
                "" if want is None else (f"{want:,} ✓" if want == value else f"[red]{want:,} ✗[/]")
            )
            row.append(mark)
        table.add_row(*row)
    return table


def cmd_data_download(args: argparse.Namespace, out: Console) -> int:
    """Download a catalogue dataset into the data directory."""
    from eclsr.data.download import download

    entry = lookup(args.name)
    root = data_dir(DataConfig(data_dir=args.data_dir))
    result = download(entry, root, url=args.url, timeout=args.timeout)
    state = "already present" if result.already_present else "downloaded"
    out.print(f"{entry.name}: {state} at {result.path}", highlight=False)
    if result.verified:
        out.print(f"sha256 verified: {result.sha256}", highlight=False)
    else:
        out.print(f"[yellow]no recorded checksum[/]; sha256 of the file is {result.sha256}")
    return 0


def cmd_data_list(args: argparse.Namespace, out: Console) -> int:
    """List catalogue entries and whether each is present in the data directory."""
    root = data_dir(DataConfig(data_dir=args.data_dir))
    table = Table(title=f"datasets (data directory: {root})")
    for column in ("name", "description", "file", "present", "users / items / actions"):
        table.add_column(column)
    for entry in CATALOGUE.values():
        present = "yes" if (root / entry.path).is_file() else "no"
        expected = " / ".join(
            f"{entry.expected[k]:,}" for k in ("users", "items", "actions") if k in entry.expected
        )
        table.add_row(entry.name, entry.description, str(Path(entry.path)), present, expected)
    out.print(table)
    return 0
