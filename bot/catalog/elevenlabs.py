"""ElevenLabs: songs with vocals and lyrics (ElevenLabs Music), and its stem separation."""

from __future__ import annotations

from typing import Literal

from bot.catalog.params import Capability, Param, ParamType
from bot.catalog.spec import ModelSpec
from bot.config import ModelRoute

# ElevenLabs output formats (codec_samplerate_bitrate). Stem separation takes MP3 and Opus ones below (and PCM
# and telephony formats, which its stems can't be delivered in); not "auto" or mp3_48000_* (a 422).
StemsOutputFormat = Literal[
    "mp3_22050_32",
    "mp3_24000_48",
    "mp3_44100_32",
    "mp3_44100_64",
    "mp3_44100_96",
    "mp3_44100_128",
    "mp3_44100_192",
    "opus_48000_32",
    "opus_48000_64",
    "opus_48000_96",
    "opus_48000_128",
    "opus_48000_192",
]
# Songs take those, "auto" (mp3_44100_128 on music_v1, mp3_48000_192 on later models), mp3_48000_*, and raw PCM,
# which Encore delivers as WAV. (u-law and A-law, for telephony, are left out.)
SongOutputFormat = Literal[
    StemsOutputFormat,
    "auto",
    "mp3_48000_128",
    "mp3_48000_192",
    "mp3_48000_240",
    "mp3_48000_320",
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_32000",
    "pcm_44100",
    "pcm_48000",
]

# The `format:` choices of /music song; raw PCM arrives without a header and is delivered as WAV.
SONG_FORMATS: tuple[SongOutputFormat, ...] = (
    "mp3_44100_128",
    "mp3_44100_192",
    "mp3_48000_192",
    "mp3_44100_64",
    "opus_48000_128",
    "opus_48000_192",
    "pcm_44100",
    "pcm_48000",
)


SONG = ModelSpec(
    key="song",
    display_name="ElevenLabs Music",
    description="ElevenLabs Music: full songs with vocals and lyrics (or instrumentals), up to 10 minutes.",
    settings_field="song",
    capabilities=frozenset({Capability.TEXT, Capability.VOCALS}),
    min_duration_s=3,
    max_duration_s=600,
    default_duration_s=30,
    duration_key="music_length_ms",
    duration_unit=1000,
    max_prompt_chars=4100,  # ElevenLabs' limit: room for lyrics
    auto_seed=False,  # a seed only works with a composition plan: send one only when asked
    seed_key="seed",
    output_formats=("mp3", "opus", "wav"),
    cost_per_output_s_usd=0.0075,  # rough: about $0.45 a minute on a paid plan
    signs_c2pa=True,
    params=(
        Param("instrumental", ParamType.BOOLEAN, "no vocals", False, input_key="force_instrumental", common=True),
        Param("output_format", ParamType.CHOICE, "audio format and quality", "mp3_44100_128", choices=SONG_FORMATS),
    ),
)

STEM_VARIATIONS = {"two": "two_stems_v1", "six": "six_stems_v1"}

# Splitting a track: ElevenLabs' stem separation, or the demucs model on Replicate ([stems] provider).
ELEVENLABS_STEMS = ModelSpec(
    key="stems",
    display_name="Stem separation (ElevenLabs)",
    description="Splits a track into stems: vocals and accompaniment, or vocals, drums, bass, guitar, piano, other.",
    settings_field="stems",
    capabilities=frozenset({Capability.STEMS}),
    fixed_duration_s=0.0,
    duration_key=None,
    prompt_key=None,
    seed_key=None,
    cost_per_run_usd=0.05,
    route_from=lambda settings: ModelRoute(provider="elevenlabs", ref="stem-separation"),
    signs_c2pa=True,
    params=(Param("stems", ParamType.CHOICE, "how many stems", "six", choices=tuple(STEM_VARIATIONS), common=True),),
)
