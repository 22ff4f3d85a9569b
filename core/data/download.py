"""``eclsr data download``: fetch a catalogue dataset, resumably, atomically, checksum-verified.

Bytes go to ``<file>.part`` first (a later call resumes it with an HTTP Range request), and the
file appears under its real name only after its sha256 matched the catalogue's, so a partial or
corrupt download never looks complete. Zip sources are kept in ``<data_dir>/.downloads/`` and
the catalogue's member is extracted the same way. Runs never call this.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from eclsr.data.cache import file_sha256
from eclsr.data.catalogue import CatalogueEntry
from eclsr.errors import DataError

CHUNK = 1 << 20


@dataclass(frozen=True)
class Downloaded:
    """What ``download`` produced: the file, its sha256, and whether a recorded checksum matched."""

    path: Path
    sha256: str
    verified: bool
    already_present: bool = False


def download(
    entry: CatalogueEntry, data_dir: Path, url: str | None = None, timeout: float = 60.0
) -> Downloaded:
    """Fetch ``entry`` into ``data_dir`` (``url`` overrides the catalogue's, e.g. a mirror)."""
    target = data_dir / entry.path
    if target.is_file():
        sha = file_sha256(target)
        if entry.sha256 is None or sha == entry.sha256:
            return Downloaded(target, sha, entry.sha256 is not None, already_present=True)
    source = url or entry.url
    if not source:
        msg = f"dataset {entry.name!r} has no download URL. {entry.notes} Place the file at {str(target)!r}."
        raise DataError(msg)
    if entry.archive_member:
        archive = data_dir / ".downloads" / Path(source.split("?")[0]).name
        if not archive.is_file() or not zipfile.is_zipfile(archive):
            fetch(source, archive, timeout)
        staged = _extract(archive, entry.archive_member, target)
    else:
        staged = target.with_name(target.name + ".part")
        fetch(source, staged, timeout, finish=False)
    sha = file_sha256(staged)
    if entry.sha256 is not None and sha != entry.sha256:
        staged.unlink()
        msg = f"checksum mismatch for {entry.name!r} from {source}: expected sha256 {entry.sha256}, got {sha}. The download was discarded; try again or check the URL."
        raise DataError(msg)
    os.replace(staged, target)
    return Downloaded(target, sha, entry.sha256 is not None)


def fetch(url: str, dest: Path, timeout: float, finish: bool = True) -> None:
    """Download ``url`` to ``dest + '.part'``, resuming it if present; rename to ``dest`` if ``finish``.

    With ``finish=False``, ``dest`` is itself the ``.part`` file and stays there.
    """
    part = dest.with_name(dest.name + ".part") if finish else dest
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            mode = "ab" if have and response.status == 206 else "wb"
            with part.open(mode) as out:
                shutil.copyfileobj(response, out, CHUNK)
    except urllib.error.HTTPError as exc:
        if not (exc.code == 416 and have):  # 416: the part file is already complete
            msg = f"downloading {url} failed: HTTP {exc.code} {exc.reason}. The partial file {part} is kept; rerun to resume."
            raise DataError(msg) from None
    except (urllib.error.URLError, OSError) as exc:
        msg = f"downloading {url} failed: {exc}. The partial file {part} is kept; rerun to resume."
        raise DataError(msg) from None
    if finish:
        os.replace(part, dest)


def _extract(archive: Path, member: str, target: Path) -> Path:
    staged = target.with_name(target.name + ".part")
    staged.parent.mkdir(parents=True, exist_ok=True)
    try:
        with (
            zipfile.ZipFile(archive) as zipped,
            zipped.open(member) as src,
            staged.open("wb") as out,
        ):
            shutil.copyfileobj(src, out, CHUNK)
    except KeyError:
        msg = f"{archive} has no member {member!r}; the archive may be a different version. Delete it and retry."
        raise DataError(msg) from None
    except zipfile.BadZipFile:
        archive.unlink()
        msg = f"{archive} is not a valid zip; it was removed, rerun to download again."
        raise DataError(msg) from None
    return staged
