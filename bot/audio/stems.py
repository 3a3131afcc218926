"""Unpacking a ZIP of stems safely: audio entries only, no paths, capped in size. Blocking: use a thread."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

_AUDIO = {".mp3", ".wav", ".flac", ".ogg", ".opus", ".m4a", ".aac", ".pcm"}


class StemsError(Exception):
    pass


def unpack_stems(archive: bytes, dest: Path, max_bytes: int) -> dict[str, Path]:
    """Stem name -> file, for each audio entry of ``archive`` (names are taken from the entry, never paths)."""
    try:
        zipped = zipfile.ZipFile(io.BytesIO(archive))
    except zipfile.BadZipFile as exc:
        raise StemsError(f"not a zip: {exc}") from None
    files: dict[str, Path] = {}
    total = 0
    dest.mkdir(parents=True, exist_ok=True)
    with zipped:
        for entry in zipped.infolist():
            if entry.is_dir():
                continue
            name = Path(entry.filename).name
            stem, suffix = Path(name).stem, Path(name).suffix.lower()
            if suffix not in _AUDIO or not stem or stem.startswith("."):
                continue
            total += entry.file_size
            if total > max_bytes:
                raise StemsError(f"stems exceed {max_bytes} bytes")
            safe = "".join(c for c in stem if c.isalnum() or c in "_-")[:40] or f"stem{len(files) + 1}"
            path = dest / f"{safe}{suffix}"
            try:
                path.write_bytes(zipped.read(entry))
            except (zipfile.BadZipFile, OSError) as exc:
                raise StemsError(f"bad entry {name!r}: {exc}") from None
            files[safe] = path
    if not files:
        raise StemsError("no audio in the zip")
    return files
