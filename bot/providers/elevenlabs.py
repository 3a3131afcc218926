"""ElevenLabs Music: songs with vocals (``/v1/music/detailed``), composition plans and stem separation.

Unlike Replicate these are long synchronous calls: the request itself is the job (a
:class:`~bot.providers.base.CallProvider`, and a :class:`~bot.providers.base.Planner`). The job service runs
them as tasks it owns (cancel = abort the request) and reports progress as bytes arrive. What ElevenLabs
wants is decided here: the model id and format from ``[elevenlabs]``, sections kept to their lengths on
``music_v1``, a seed sent only with a composition plan. Errors are translated once, here, into messages people
can act on: a refused prompt comes with ElevenLabs' own suggestion, quota and credit problems name who must fix
them, rate limits back off.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from yarl import URL

from bot import metrics
from bot.audio.stems import StemsError, unpack_stems
from bot.catalog import ELEVENLABS_STEMS, STEM_VARIATIONS
from bot.catalog.lyrics import lyric_lines
from bot.catalog.plans import instrumental
from bot.config import Settings
from bot.errors import (
    OutputError,
    ProviderRateLimitError,
    ProviderUnavailableError,
    TooLargeError,
    cause,
)
from bot.providers.base import (
    BuildContext,
    Costed,
    OnRestart,
    ProgressCallback,
    ProviderProtocol,
    ProviderRoute,
    ProviderSpec,
    Song,
    Stems,
    WebhookRoute,
)
from bot.providers.elevenlabs_api import ElevenLabsSettings, elevenlabs_settings, error_for, signed
from bot.providers.elevenlabs_song import CUT_OFF, receive_song, song_suffix
from bot.providers.retry import RetryPolicy, retry_after_s

if TYPE_CHECKING:
    from bot.config import LimitsSettings

log = logging.getLogger(__name__)


T = TypeVar("T")
# Caps on what an answer may hold, unless the caller says ([storage] max_output_bytes for songs and stems).
_MAX_SONG_BYTES = 200 * 1024 * 1024
_MAX_PLAN_BYTES = 4 * 1024 * 1024
# How each endpoint is named in the metrics.
_OPERATIONS = {"/v1/music/detailed": "compose", "/v1/music/plan": "plan", "/v1/music/stem-separation": "stems"}


def _sung(body: dict[str, Any]) -> bool:
    """A song that may have words to time: not forced instrumental, and its plan (if it has one) has lyrics.
    (An instrumental isn't asked for word timestamps: there are none, and they make a song slower.)"""
    if body.get("force_instrumental"):
        return False
    plan = body.get("composition_plan")
    return plan is None or (isinstance(plan, dict) and bool(lyric_lines(plan)))


class ElevenLabsClient:
    name = "elevenlabs"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_base: str,
        api_key: str,
        model_id: str = "music_v1",
        output_format: str = "mp3_44100_128",
        stems_output_format: str = "mp3_44100_128",
        max_retries: int = 3,
        retry_base_s: float = 2.0,
        total_timeout_s: float = 900.0,
    ) -> None:
        self.plan_model = model_id  # songs and plans are made by this model; plans take its shape
        self.output_format = output_format  # a song's, unless its input says (FormatDefault)
        self._stems_output_format = stems_output_format
        self._session = session
        self._base = URL(api_base.rstrip("/"))
        self._key = api_key
        # A 429 is a refusal: nothing was generated or charged, so it is retried, waiting as Retry-After asks
        # (up to two minutes). Anything else may have cost credits and is not.
        self._retry = RetryPolicy(retries=max_retries, base_s=retry_base_s, max_s=60.0, retry_after_max_s=120.0)
        self._total_timeout_s = total_timeout_s

    @classmethod
    def from_settings(cls, context: BuildContext, routes: Sequence[ProviderRoute]) -> ElevenLabsClient | None:
        """The client for ``[elevenlabs]`` when ELEVENLABS_API_KEY is set (songs, plans and its stems are
        optional: without the key they are off, said once if a setting routes work here)."""
        key = context.secrets.get("ELEVENLABS_API_KEY")
        if key is None:
            if routes:
                log.info("ELEVENLABS_API_KEY is not set: /music song, plans and ElevenLabs stems are off")
            return None
        cfg = elevenlabs_settings(context.settings)
        return cls(
            context.session(connect_s=cfg.connect_timeout_s, read_s=cfg.read_timeout_s),
            api_base=str(cfg.api_base),
            api_key=key.get_secret_value(),
            model_id=cfg.model_id,
            output_format=cfg.output_format,
            stems_output_format=cfg.stems_output_format,
            max_retries=cfg.max_retries,
            retry_base_s=cfg.retry_base_s,
            total_timeout_s=cfg.total_timeout_s,
        )

    async def _request(
        self,
        path: str,
        read: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        *,
        json_body: Any = None,
        data: Callable[[], aiohttp.FormData] | None = None,
        query: dict[str, str] | None = None,
    ) -> T:
        """POST, and ``read`` the 200 answer (an error answer is a typed ProviderError). Retries only refusals
        (429) with backoff: anything else may have cost credits."""
        url = (self._base / path.lstrip("/")).with_query(query or {})  # keeps a base path (a proxy's prefix)
        return await self._retry.call(
            lambda: self._post(url, path, read, json_body=json_body, data=data),
            retry_if=lambda error: isinstance(error, ProviderRateLimitError),
            what=f"ElevenLabs {path}",
        )

    async def _post(
        self,
        url: URL,
        path: str,
        read: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        *,
        json_body: Any,
        data: Callable[[], aiohttp.FormData] | None,
    ) -> T:
        """One attempt of :meth:`_request`; a failure is a typed ProviderError."""
        try:
            with metrics.provider_call(self.name, _OPERATIONS.get(path, path.rsplit("/", 1)[-1])):
                async with asyncio.timeout(self._total_timeout_s):
                    async with self._session.post(
                        url,
                        json=json_body,
                        data=data() if data else None,
                        headers={"xi-api-key": self._key},
                        allow_redirects=False,
                    ) as response:
                        if response.status != 200:
                            try:
                                body = await response.json(content_type=None)
                            except (ValueError, aiohttp.ClientError):
                                body = None
                            raise error_for(response.status, body, retry_after_s(response.headers))
                        return await read(response)
        except TimeoutError:
            raise ProviderUnavailableError(
                "ElevenLabs took too long. Please try again.", detail=f"{path}: timed out"
            ) from None
        except aiohttp.ClientPayloadError:
            raise ProviderUnavailableError(CUT_OFF, detail=f"{path}: payload") from None
        except aiohttp.ClientError as exc:
            raise ProviderUnavailableError(
                "I couldn't reach ElevenLabs. Please try again later.", detail=f"{path}: {cause(exc)}"
            ) from None

    # -- the call protocol --------------------------------------------------------------------------------

    async def call(
        self,
        model: str,
        input: dict[str, Any],
        *,
        files: Mapping[str, str],
        length_s: float,
        dest: Path,
        max_bytes: int,
        on_bytes: ProgressCallback | None = None,
    ) -> Song | Stems:
        """A song (``/music song``, a composed plan) or the stems of ``files["file"]``, in one call. An input's
        ``sign_with_c2pa`` (the server asked for C2PA content credentials) is sent only for MP3: ElevenLabs signs
        nothing else and refuses the request."""
        if model == ELEVENLABS_STEMS.key:
            variation = STEM_VARIATIONS.get(str(input.get("stems")), "six_stems_v1")
            archive = await self.separate_stems(
                Path(files["file"]),
                variation=variation,
                output_format=self._stems_output_format,
                sign_with_c2pa=signed(input, self._stems_output_format),
                max_bytes=max_bytes,
            )
            try:
                return Stems(await asyncio.to_thread(unpack_stems, archive, Path(f"{dest}-stems"), max_bytes))
            except StemsError as exc:
                raise OutputError("The stems came back damaged. Please try again.", detail=str(exc)) from None
        body = {key: value for key, value in input.items() if key not in ("output_format", "sign_with_c2pa")}
        output_format = str(input.get("output_format", self.output_format))
        body["model_id"] = self.plan_model
        if signed(input, output_format):
            body["sign_with_c2pa"] = True
        if "composition_plan" in body and self.plan_model == "music_v1":
            body["respect_sections_durations"] = True  # later models always keep them
        if "seed" in body and "prompt" in body:
            body = await self._song_from_plan(body)
        if _sung(body):
            body["with_timestamps"] = True  # when each word is sung: synced lyrics (the Lyrics button)
        path = Path(f"{dest}{song_suffix(output_format)}")
        song = await self.compose(
            body, path, output_format=output_format, length_s=length_s, max_bytes=max_bytes, on_bytes=on_bytes
        )
        song.model = self.plan_model
        return song

    async def _song_from_plan(self, body: dict[str, Any]) -> dict[str, Any]:
        """ElevenLabs takes a seed only with a composition plan: plan the prompt first (free), then compose it."""
        plan = await self.plan(str(body["prompt"]), length_ms=body.get("music_length_ms"))
        if body.get("force_instrumental"):
            plan = instrumental(plan)
        return {
            "composition_plan": plan,
            "model_id": body["model_id"],
            "seed": body["seed"],
            **({"respect_sections_durations": True} if body["model_id"] == "music_v1" else {}),
            **({"sign_with_c2pa": True} if body.get("sign_with_c2pa") else {}),
        }

    # -- the endpoints ----------------------------------------------------------------------------------

    async def compose(
        self,
        body: dict[str, Any],
        dest: Path,
        *,
        output_format: str,
        length_s: float,
        max_bytes: int = _MAX_SONG_BYTES,
        on_bytes: ProgressCallback | None = None,
    ) -> Song:
        """A song with its metadata (``/v1/music/detailed``), its audio streamed to ``dest``.

        ``dest`` should end in :func:`song_suffix`: raw PCM is stored as WAV, its channel count read from its
        size against ``length_s`` (the length asked for), since ElevenLabs doesn't document it.
        """

        async def read(response: aiohttp.ClientResponse) -> Song:
            return await receive_song(
                response, dest, output_format=output_format, length_s=length_s, max_bytes=max_bytes, on_bytes=on_bytes
            )

        return await self._request("/v1/music/detailed", read, json_body=body, query={"output_format": output_format})

    async def plan(
        self, prompt: str, *, length_ms: int | None = None, source: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A composition plan for ``prompt`` (costs no credits), shaped for :attr:`plan_model`."""
        body: dict[str, Any] = {"prompt": prompt, "model_id": self.plan_model}
        if length_ms is not None:
            body["music_length_ms"] = length_ms
        if source is not None:
            body["source_composition_plan"] = source
        raw, _ = await self._request("/v1/music/plan", _read_all(_MAX_PLAN_BYTES), json_body=body)
        try:
            plan = json.loads(raw)
        except ValueError:
            raise ProviderUnavailableError(detail="ElevenLabs sent a malformed plan") from None
        if not isinstance(plan, dict):
            raise ProviderUnavailableError(detail="ElevenLabs sent a malformed plan")
        return plan

    async def separate_stems(
        self,
        path: Path,
        *,
        variation: str,
        output_format: str,
        sign_with_c2pa: bool = False,
        max_bytes: int = _MAX_SONG_BYTES,
    ) -> bytes:
        """A ZIP of stems of the audio at ``path`` (two or six), at most ``max_bytes``; ``sign_with_c2pa`` (a form
        field, as the SDK sends it; MP3 formats only) asks for C2PA content credentials on each."""
        audio = await asyncio.to_thread(path.read_bytes)

        def form() -> aiohttp.FormData:
            body = aiohttp.FormData()
            body.add_field("file", audio, filename=path.name, content_type="application/octet-stream")
            body.add_field("stem_variation_id", variation)
            if sign_with_c2pa:
                body.add_field("sign_with_c2pa", "true")
            return body

        raw, content_type = await self._request(
            "/v1/music/stem-separation", _read_all(max_bytes), data=form, query={"output_format": output_format}
        )
        if not content_type.startswith(("application/zip", "application/octet-stream")):
            raise ProviderUnavailableError(detail=f"stem separation answered {content_type!r}")
        return raw


def _read_all(max_bytes: int) -> Callable[[aiohttp.ClientResponse], Awaitable[tuple[bytes, str]]]:
    """A reader of a whole answer (a plan, a ZIP of stems) and its type, refused past ``max_bytes``."""

    async def read(response: aiohttp.ClientResponse) -> tuple[bytes, str]:
        chunks: list[bytes] = []
        received = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            received += len(chunk)
            if received > max_bytes:
                raise TooLargeError(detail=f"ElevenLabs answered more than {max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks), response.headers.get("Content-Type", "")

    return read


# -- what the core needs to know (see bot/providers/registry.py) ---------------------------------------

# The catalog model priced by its length (bot.catalog.SONG); stems have no per-second price: their estimate stands.
_PRICED_BY_LENGTH = frozenset({"song"})


def cost_usd(job: Costed, predict_time_s: float | None, limits: LimitsSettings) -> float | None:
    """ElevenLabs bills a song by its length: ``duration_s`` times ``[limits] elevenlabs_usd_per_s``."""
    if job.model not in _PRICED_BY_LENGTH:
        return None
    return round((job.duration_s or 0.0) * limits.elevenlabs_usd_per_s, 6)


def check_settings(settings: Settings, routes: Sequence[ProviderRoute]) -> None:
    """Nothing to refuse: without its key ElevenLabs is simply off."""


PROVIDER = ProviderSpec[ElevenLabsClient](
    name="elevenlabs",
    title="ElevenLabs",
    key_env="ELEVENLABS_API_KEY",
    protocol=ProviderProtocol.CALL,
    capacity=lambda settings: settings.limits.elevenlabs_jobs_in_flight,
    cost_usd=cost_usd,
    webhook=WebhookRoute.NONE,
    on_restart=OnRestart.INTERRUPTED,
    check=check_settings,
    build=ElevenLabsClient.from_settings,
    settings=ElevenLabsSettings,
)
