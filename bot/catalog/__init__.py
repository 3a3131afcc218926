"""The model catalog: each model, what it can do, and every parameter it takes.

Commands, validation, the CLI, help text and autocomplete all read this package; adding a model is a
catalog entry, not new command code. A :class:`Param` (``params``) knows its type, default, range and how to
parse a value typed as text; a :class:`ModelSpec` (``spec``) knows how a validated request becomes the provider's
input and how to read the provider's output. One module per model family (``musicgen``, ``stable_audio``,
``riffusion``, ``elevenlabs``, ``demucs``), the table of them in ``models``, and ``requests`` checks a request.
"""

from bot.catalog.demucs import DEMUCS
from bot.catalog.elevenlabs import ELEVENLABS_STEMS, SONG, SONG_FORMATS, STEM_VARIATIONS
from bot.catalog.models import MODELS, TEXT_MODELS, all_params, get_model, stems_model
from bot.catalog.musicgen import MELODY_VERSIONS, MUSICGEN, MUSICGEN_MAX_PROMPT_S, MUSICGEN_VERSIONS
from bot.catalog.params import Capability, Param, ParamType, Translate
from bot.catalog.requests import MAX_BATCH, SEED_MAX, clean_prompt, parse_options, validate_request
from bot.catalog.riffusion import RIFFUSION, RIFFUSION_SEED_IMAGES
from bot.catalog.spec import (
    Host,
    ModelSpec,
    Outputs,
    ValidatedRequest,
    check_duration,
    default_duration,
    duration_range,
)
from bot.catalog.stable_audio import STABLE_AUDIO
from bot.config import ModelRoute  # where a model runs (ModelSpec.route); importable from here as before

__all__ = [
    "DEMUCS",
    "ELEVENLABS_STEMS",
    "MAX_BATCH",
    "MELODY_VERSIONS",
    "MODELS",
    "MUSICGEN",
    "MUSICGEN_MAX_PROMPT_S",
    "MUSICGEN_VERSIONS",
    "RIFFUSION",
    "RIFFUSION_SEED_IMAGES",
    "SEED_MAX",
    "SONG",
    "SONG_FORMATS",
    "STABLE_AUDIO",
    "STEM_VARIATIONS",
    "TEXT_MODELS",
    "Capability",
    "Host",
    "ModelRoute",
    "ModelSpec",
    "Outputs",
    "Param",
    "ParamType",
    "Translate",
    "ValidatedRequest",
    "all_params",
    "check_duration",
    "clean_prompt",
    "default_duration",
    "duration_range",
    "get_model",
    "parse_options",
    "stems_model",
    "validate_request",
]
