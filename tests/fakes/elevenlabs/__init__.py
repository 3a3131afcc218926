"""A strict fake of the ElevenLabs Music API (``https://api.elevenlabs.io``) for tests.

A real aiohttp server on ``127.0.0.1:<random port>`` (``base_url``; paths start with ``/v1/music``), built on
the shared ``FakeServer`` (request log, ``next_request``/``count``, injected faults, awaitable hooks). Every
route requires the ``xi-api-key`` header. Bodies are validated as the contract describes and every violation
is a FastAPI-style 422 ``{"detail":[{"loc":[...],"msg":...,"type":...}]}`` (pydantic v2 messages and types).
Generated audio is real: a tone of exactly the song's length in the requested ``output_format`` (MP3 decodes
back to the exact length); stems are real audio files of the uploaded file's length.

Routes: ``POST /v1/music`` (compose), ``/v1/music/stream``, ``/v1/music/detailed`` (``multipart/mixed``),
``/v1/music/detailed/stream`` (SSE), ``/v1/music/plan`` and ``/v1/music/stem-separation``.

Tests drive failures with ``inject`` (an error by code name or HTTP status, exact bodies from the contract),
``drop`` (connection closed unanswered), ``truncate`` (body cut mid-stream, connection closed), ``delay`` and
``hold`` (keep matching requests in flight until released; a client that gives up is recorded as an abort).
They synchronise by awaiting ``next_generation``/``next_separation``/``next_abort``/``next_request`` and
``Hold.wait_held``, or the ``on_chunk`` hook, never by sleeping.

Contract: tests/specs/elevenlabs-music.md. Guesses and deliberate differences:

* Stricter than FastAPI: JSON types are checked strictly (``"30000"`` or ``30000.0`` for an int is a 422),
  and unknown body keys are 422 ``extra_forbidden`` (the real API would ignore them silently), including a
  field on an endpoint whose schema lacks it (``with_timestamps`` and ``with_waveform_visual`` on
  compose/stream, ``sign_with_c2pa`` and ``respect_sections_durations`` on the stream endpoints) and
  ``output_format`` in the body instead of the query. Stem separation likewise rejects unknown form fields and
  a ``stem_variation_id`` sent as a query.
* Cross-field rules (live status undocumented; messages start with ``fake:``): both or neither of
  ``prompt``/``composition_plan``; prompt-only fields (``music_length_ms``, ``force_instrumental``) with a
  plan; plan-only ``respect_sections_durations`` with a prompt (on v2 models it is accepted and ignored, as the
  SDK documents); ``seed`` with a prompt (the docs
  say so; ``allow_seed_with_prompt`` turns it off); ``finetune_strength`` without ``finetune_id``;
  ``sign_with_c2pa`` with a non-MP3 format (on stem separation too: the SDK says "applicable only for mp3
  files"); a plan whose format does not match the model. Guesses: an empty
  prompt, a plan with no sections/chunks and a plan longer than 600 000 ms in total are 422 too.
* ``sign_with_c2pa`` (compose, detailed, stem separation) marks each MP3 it applies to with the fake's C2PA
  manifest store (``c2pa.py``: a GEOB frame where the C2PA specification puts it, JSON inside, bound to the
  audio by a SHA-256); ``read_manifest`` returns it while the file is unaltered. ``Generation``/``Separation``
  record ``sign_with_c2pa``.
* ``music_v2_5`` takes a CompositionPlan like ``music_v2``, and ``auto`` is ``mp3_48000_192`` for it.
* Fields and enums follow the official Python SDK (``elevenlabs`` 2.78.0, its ``music`` client and types):
  ``with_waveform_visual`` on the detailed endpoints (the detailed JSON then carries ``waveform_visual``, 4
  values a second from -1000 to 1000; where the detailed stream would carry it is undocumented, so it sends
  none); ``enable_logging`` (query) must parse as a bool; a chunk's ``conditioning_ref`` is an audio reference
  to a stored song; a chunk's text may start with a ``[Section name]`` of 1-100 characters, then at most 30
  lines of at most 200 characters (the heading line not counted: guess). Other unknown query keys are ignored,
  as FastAPI does.
* A plan's ``source_from``/audio-reference ``song_id`` must name a song this fake generated with
  ``store_for_inpainting``; otherwise 404 ``song_not_found`` (guess). Finetune ids are not checked.
* When the model "picks" the length (a prompt without ``music_length_ms``) the song is ``default_length_ms``.
* Formats (guesses where undocumented): MP3 is stereo; PCM is raw s16le with ``pcm_channels`` channels
  (default 1, as in ElevenLabs TTS); u-law/A-law are raw mono 8 kHz G.711; opus is Ogg Opus, stereo. Content
  types ``audio/mpeg``, ``audio/pcm``, ``audio/basic`` (u-law), ``audio/alaw``, ``audio/ogg``; file
  extensions mp3/pcm/ulaw/alaw/opus. Tier limits on formats are not modelled.
* Detailed: the boundary rotates through three styles per response unless ``boundary`` is set: Python
  ``email``-style ``===============<19 digits>==`` (quoted in the header, it contains ``=``), dashed
  ``----EncoreFake-<hex>`` and plain hex. The body ends ``--<B>--`` plus a newline. ``multipart_newline="\\n"``
  gives the LF-only variant. ``audio_trap=True`` wraps the MP3 in an ID3v2 tag whose text holds ``\\r\\n--``,
  ``\\r\\n--<B minus its last char>`` and a bare ``\\n--`` line, and an ID3v1 tag so the audio itself ends with
  ``\\r\\n``; the result still decodes to the same samples.
* Detailed stream events (payloads guessed; the contract says they are illustrative): ``composition_plan``
  (the plan), ``song_metadata``, ``audio_chunk`` (data: a base64 string), ``word_timestamps`` (a list, only
  with ``with_timestamps``), ``completion`` (``{"song_id", "status": "completed"}``). Each is one
  ``data: {...}`` line and a blank line. ``sse_noise=True`` adds a comment line, an unknown event and a
  non-JSON ``data:`` line before the audio.
* Song metadata, plans, lyrics and word timestamps are derived deterministically from the prompt or plan
  (see ``derive_plan``/``song_metadata``). Word timestamps (``{word, start_ms, end_ms}``, the SDK's
  ``WordTimestamp``) come only with ``with_timestamps`` (detailed endpoints), one per lyric word in order,
  spread over its section, so they always lie within the song; ``tamper_words`` rewrites them (a test's
  broken ones). A song is explicit (``song_metadata.is_explicit``, the SDK's ``SongMetadata``) when its
  prompt or a lyric line has the word ``EXPLICIT_MARKER`` ("explicit"), else not (guess: ElevenLabs doesn't
  say how it judges). ``/plan`` with ``source_composition_plan`` returns that plan,
  durations rescaled to ``music_length_ms`` when given (422 ``fake:`` if a section would leave 3000..120000).
* Two-stem names are ``vocals`` and ``accompaniment`` (reported, undocumented). Stems are tones at
  different pitches, not a real separation. An undecodable upload is 400 ``invalid_request``/
  ``invalid_audio`` (guess).
* Error messages for injected errors are the fake's own wording; codes, types, statuses and shapes follow the
  contract. Unknown routes are 404 ``{"detail":"Not Found"}`` (FastAPI's).
* ``prefix="/elevenlabs"`` serves every route under that path (ElevenLabs behind a proxy; ``base_url`` includes
  it); ``song_id_header`` spells the ``song-id`` response header another way (header names are
  case-insensitive).

Layout: ``server.py`` (``FakeElevenLabs``: the app, auth, error answers, ``inject``/``drop``/``truncate``/
``delay``/``hold``), ``state.py`` (the typed base its parts share: settings and records), ``music.py``
(generation and plan routes), ``stems.py`` (stem separation), ``c2pa.py`` (content credentials),
``responses.py`` (writing bodies: pieces, holds, truncation, multipart, SSE), ``faults.py`` (``Fault``,
``Hold``), ``records.py`` (``Generation``, ``Separation``, ``PlanRecord``), ``validation.py`` and
``schemas.py`` (request checks), ``plans.py`` (plans, metadata, lyrics), ``formats.py`` (output formats and
audio) and ``errors.py`` (error bodies by code).
"""

from tests.fakes._http import RecordedRequest

from .c2pa import read_manifest, sign_mp3
from .errors import ERRORS, ApiError, Invalid, api_error, error_detail
from .faults import Fault, Hold
from .formats import (
    AUTO_FORMAT,
    CONTENT_TYPES,
    GENERATION_FORMATS,
    STEM_FORMATS,
    AudioFormat,
    encode_audio,
    render_tone,
    trap_mp3,
    waveform_visual,
)
from .music import MusicRoutes
from .plans import (
    EXPLICIT_MARKER,
    GENRES,
    derive_plan,
    fit_plan,
    is_explicit,
    plan_length_ms,
    plan_lyrics,
    plan_negative_styles,
    song_metadata,
    word_timestamps,
)
from .records import ChunkHook, Generation, PlanRecord, Separation, Transfer
from .responses import ResponseWriter
from .schemas import (
    MAX_LENGTH_MS,
    MIN_LENGTH_MS,
    MODEL_IDS,
    V1_MODELS,
    AudioReferenceChunk,
    Bool,
    CompositionPlan,
    GenerationBody,
    GenerationChunk,
    MusicPrompt,
    PlanBody,
    SectionMs,
    SongId,
    SongSection,
    SourceFrom,
    Styles,
    TimeRange,
)
from .server import FakeElevenLabs
from .state import DEFAULT_API_KEY, ElevenLabsState
from .stems import STEMS, StemRoutes
from .validation import ENDPOINT_FIELDS, ENDPOINTS, query_errors, validate_format, validate_generation

__all__ = [
    "AUTO_FORMAT",
    "CONTENT_TYPES",
    "DEFAULT_API_KEY",
    "ENDPOINTS",
    "ENDPOINT_FIELDS",
    "ERRORS",
    "EXPLICIT_MARKER",
    "GENERATION_FORMATS",
    "GENRES",
    "MAX_LENGTH_MS",
    "MIN_LENGTH_MS",
    "MODEL_IDS",
    "STEMS",
    "STEM_FORMATS",
    "V1_MODELS",
    "ApiError",
    "AudioFormat",
    "AudioReferenceChunk",
    "Bool",
    "ChunkHook",
    "CompositionPlan",
    "ElevenLabsState",
    "FakeElevenLabs",
    "Fault",
    "Generation",
    "GenerationBody",
    "GenerationChunk",
    "Hold",
    "Invalid",
    "MusicPrompt",
    "MusicRoutes",
    "PlanBody",
    "PlanRecord",
    "RecordedRequest",
    "ResponseWriter",
    "SectionMs",
    "Separation",
    "SongId",
    "SongSection",
    "SourceFrom",
    "StemRoutes",
    "Styles",
    "TimeRange",
    "Transfer",
    "api_error",
    "derive_plan",
    "encode_audio",
    "error_detail",
    "fit_plan",
    "is_explicit",
    "plan_length_ms",
    "plan_lyrics",
    "plan_negative_styles",
    "query_errors",
    "read_manifest",
    "render_tone",
    "sign_mp3",
    "song_metadata",
    "trap_mp3",
    "validate_format",
    "validate_generation",
    "waveform_visual",
    "word_timestamps",
]
