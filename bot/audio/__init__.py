"""Audio work with PyAV (FFmpeg). Everything here blocks: call it through ``asyncio.to_thread``."""

from __future__ import annotations

from pathlib import Path

import av
from av.container import InputContainer


def open_input(path: Path) -> InputContainer:
    """Open a media file for reading. Tags that are not valid UTF-8 (common in user files) are
    replaced rather than fatal: PyAV's default would raise UnicodeDecodeError before any audio is read."""
    return av.open(str(path), metadata_errors="replace")
