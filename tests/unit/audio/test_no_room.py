"""A disk with no room for a file: a clear StorageFullError, logged, and no partial file left behind.

The fault is real: this process's ``RLIMIT_FSIZE`` is lowered for a moment, so the kernel refuses writes past
it with EFBIG (CPython ignores SIGXFSZ), as a full quota or disk refuses them with EDQUOT or ENOSPC.
"""

from __future__ import annotations

import base64
import errno
from pathlib import Path

import pytest

from bot.audio import no_room
from bot.audio.download import save_data_url
from bot.audio.prepare import Pcm, write_wav
from bot.errors import StorageFullError
from tests.fakes.audio import make_wav
from tests.faults._storage import file_size_limit

LIMIT = 64 * 1024


def test_a_wav_with_no_room_is_refused_whole(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dest = tmp_path / "inputs" / "clip.wav"
    pcm = Pcm(b"\0\1" * (4 * LIMIT), rate=32000, channels=2)
    with file_size_limit(LIMIT), pytest.raises(StorageFullError) as refused:
        write_wav(pcm, dest)
    assert refused.value.user_message == "Encore's storage is full; an operator has been told. Please try again later."
    assert list(dest.parent.iterdir()) == []  # no clip, no clip.wav.part
    assert "no room to write" in caplog.text
    write_wav(pcm, dest)  # room again
    assert dest.stat().st_size > LIMIT


async def test_an_inline_output_with_no_room_leaves_nothing(tmp_path: Path) -> None:
    data = make_wav(2)  # 250 KiB
    url = "data:audio/wav;base64," + base64.b64encode(data).decode()
    dest = tmp_path / "outputs" / "job.wav"
    with file_size_limit(LIMIT), pytest.raises(StorageFullError):
        await save_data_url(url, dest, max_bytes=10 * len(data))
    assert list(dest.parent.iterdir()) == []
    stored = await save_data_url(url, dest, max_bytes=10 * len(data))
    assert dest.read_bytes() == data
    assert stored.size == len(data)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_no_room_names_a_full_disk(tmp_path: Path, code: int) -> None:
    full = no_room(OSError(code, "full"), tmp_path / "a.wav")
    assert isinstance(full, StorageFullError)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EIO, errno.ENOENT])
def test_other_write_failures_are_not_called_a_full_disk(tmp_path: Path, code: int) -> None:
    assert no_room(OSError(code, "nope"), tmp_path / "a.wav") is None
