"""The typed base the fake ElevenLabs' parts share: its settings and what it has recorded.

``FakeElevenLabs`` (server.py) is this state plus the parts, each a mixin over it: writing response bodies
(responses.py), the music routes (music.py) and stem separation (stems.py).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

from tests.fakes._http import FakeServer

from .faults import Fault, Hold
from .records import ChunkHook, Generation, PlanRecord, Separation, Transfer

DEFAULT_API_KEY = "xi_fake_key_0123456789"


class ElevenLabsState(FakeServer[Fault]):
    """Settings and records of one fake ElevenLabs; see ``FakeElevenLabs``."""

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        default_length_ms: int = 30_000,
        stream_chunks: int = 4,
        boundary: str | None = None,
        multipart_newline: str = "\r\n",
        audio_trap: bool = False,
        sse_noise: bool = False,
        pcm_channels: int = 1,
        allow_seed_with_prompt: bool = False,
        prefix: str = "",
        song_id_header: str = "song-id",
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.default_length_ms = default_length_ms  # a prompt without music_length_ms
        self.stream_chunks = stream_chunks  # audio pieces for /stream and audio_chunk events
        self.boundary = boundary  # detailed: fixed boundary; None rotates styles (see the package doc)
        self.multipart_newline = multipart_newline  # "\n": the LF-only variant
        self.audio_trap = audio_trap  # detailed: audio part holds "\r\n--" and ends with "\r\n"
        self.sse_noise = sse_noise  # detailed stream: a comment, an unknown event, a non-JSON line
        self.pcm_channels = pcm_channels
        self.allow_seed_with_prompt = allow_seed_with_prompt
        self.prefix = prefix.rstrip("/")  # served under this path, as behind a proxy (e.g. "/elevenlabs")
        self.song_id_header = song_id_header  # the song-id header's spelling (names are case-insensitive)
        self.on_chunk: ChunkHook | None = None  # awaited before each body piece is written
        # Rewrites the word timestamps of a song asked for them (a test's broken ones: out of order, beyond
        # the song's end); None sends them as derived from the plan, within the song's length.
        self.tamper_words: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None
        self.generations: list[Generation] = []
        self.separations: list[Separation] = []
        self.plans: list[PlanRecord] = []
        self.aborts: list[Transfer] = []
        self.holds: list[Hold] = []
        self.songs: dict[str, Generation] = {}  # song-id -> generation
        self._new_generations: deque[Generation] = deque()
        self._new_separations: deque[Separation] = deque()
        self._new_aborts: deque[Transfer] = deque()
        self._boundaries = itertools.count()
        self._closing = False

    # ------------------------------------------------------------ URL, abandoned transfers

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}{self.prefix}"

    def _aborted(self, transfer: Transfer) -> None:
        if self._closing or transfer.aborted:
            return
        transfer.aborted = True
        self._log(self.aborts, self._new_aborts, transfer)

    # ------------------------------------------------------------ awaitable hooks

    async def next_generation(self, timeout: float = 5.0) -> Generation:
        """The oldest accepted generation not yet returned by this method."""
        return await self._next(self._new_generations, timeout, "generation")

    async def next_separation(self, timeout: float = 5.0) -> Separation:
        return await self._next(self._new_separations, timeout, "stem separation")

    async def next_abort(self, timeout: float = 5.0) -> Transfer:
        """The oldest response the client abandoned (disconnected before the end), not yet returned."""
        return await self._next(self._new_aborts, timeout, "aborted request")
