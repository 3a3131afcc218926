from __future__ import annotations

import pytest

from bot.catalog import MODELS, MUSICGEN, SEED_MAX, Host, ParamType, ValidatedRequest, parse_options, validate_request
from bot.config import Settings
from bot.errors import InvalidRequestError
from bot.locales import ENGLISH, catalogues, text
from bot.records import JobRequest


def validate(settings: Settings | None = None, **fields: object) -> ValidatedRequest:
    return validate_request(JobRequest.model_validate({"prompt": "lofi beat", **fields}), settings or Settings())


def test_defaults_build_the_musicgen_input() -> None:
    validated = validate()
    assert validated.duration_s == 8
    assert validated.spec.build_input(validated) == {
        "prompt": "lofi beat",
        "duration": 8,
        "model_version": "stereo-melody-large",
        "output_format": "wav",
        "normalization_strategy": "loudness",
    }


def test_every_musicgen_parameter_reaches_the_input() -> None:
    params = {
        "model_version": "melody-large",
        "output_format": "mp3",
        "normalization_strategy": "peak",
        "top_k": "200",
        "top_p": "0.9",
        "temperature": 1.5,
        "classifier_free_guidance": 5,
        "multi_band_diffusion": "true",
        "continuation_start": 2,
        "continuation_end": 7,
    }
    validated = validate(duration_s=30, seed=7, params=params)
    built = validated.spec.build_input(validated)
    assert built == {
        "prompt": "lofi beat",
        "duration": 30,
        "seed": 7,
        "model_version": "melody-large",
        "output_format": "mp3",
        "normalization_strategy": "peak",
        "top_k": 200,
        "top_p": 0.9,
        "temperature": 1.5,
        "classifier_free_guidance": 5,
        "multi_band_diffusion": True,
        "continuation_start": 2,
        "continuation_end": 7,
    }


def test_stable_audio_input() -> None:
    validated = validate(model="stable-audio", duration_s=47, seed=3, params={"steps": 50, "negative_prompt": "vocals"})
    assert validated.spec.build_input(validated) == {
        "prompt": "lofi beat",
        "seconds_total": 47,
        "seconds_start": 0,
        "batch_size": 1,
        "seed": 3,
        "steps": 50,
        "negative_prompt": "vocals",
    }
    random = validate(model="stable-audio")
    assert random.spec.build_input(random)["seed"] == -1  # the model's "random"


def test_riffusion_input() -> None:
    params = {
        "prompt_b": "jazz",
        "alpha": 0.25,
        "denoising": 0.6,
        "num_inference_steps": 30,
        "seed_image_id": "og_beat",
    }
    validated = validate(model="riffusion", params=params)
    assert validated.duration_s == 5.0
    assert validated.spec.build_input(validated) == {"prompt_a": "lofi beat", **params}


def test_prompt_is_normalised() -> None:
    assert validate(prompt="  warm\x00 lofi\n\n beat  ").prompt == "warm lofi beat"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": " \n\t "}, "prompt is empty"),
        ({"prompt": "x" * 501}, "501 characters long; the limit is 500"),
        ({"duration_s": 0}, "`duration` must be between 1 and 30 seconds for MusicGen"),
        ({"duration_s": 31}, "`duration` must be between 1 and 30 seconds for MusicGen"),
        ({"model": "riffusion", "duration_s": 8}, "always makes about 5 s"),
        ({"params": {"model_version": "huge"}}, "`model_version` must be one of stereo-melody-large"),
        ({"params": {"steps": "2"}}, "MusicGen has no parameter `steps`. It takes: model_version"),
        ({"seed": 0}, "`seed` must be between 1 and"),
        ({"seed": SEED_MAX + 1}, "`seed` must be between 1 and"),
        ({"model": "riffusion", "seed": 5}, "doesn't take a seed"),
        ({"model": "nope"}, "I don't know the model `nope`"),
        ({"count": 5}, "`count` must be between 1 and 4"),
        ({"count": 0}, "`count` must be between 1 and 4"),
        ({"params": {"multi_band_diffusion": True}}, "only works with the mono models"),
        ({"params": {"multi_band_diffusion": True, "model_version": "stereo-large"}}, "only works with the mono"),
        ({"params": {"continuation_start": 5, "continuation_end": 2}}, "must not be after"),
        ({"params": {"multi_band_diffusion": "maybe"}}, "`multi_band_diffusion` must be true or false"),
        ({"params": {"top_k": "1.5"}}, "`top_k` must be 0 to 2048"),
        ({"params": {"temperature": "nan"}}, "`temperature` must be 0 to 5"),
        ({"params": {"temperature": "hot"}}, "`temperature` must be 0 to 5"),
    ],
)
def test_bad_input_gets_a_clear_message(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        validate(None, **fields)
    assert message in caught.value.user_message


def bounds_cases() -> list[tuple[str, str, object, bool]]:
    """For every numeric parameter of every model: its bounds are accepted, just outside is refused."""
    cases = []
    for spec in MODELS.values():
        for param in spec.params:
            if param.type not in (ParamType.INTEGER, ParamType.NUMBER):
                continue
            step = 1 if param.type == ParamType.INTEGER else 0.001
            if param.minimum is not None:
                cases += [
                    (spec.key, param.name, param.minimum, True),
                    (spec.key, param.name, param.minimum - step, False),
                ]
            if param.maximum is not None:
                cases += [
                    (spec.key, param.name, param.maximum, True),
                    (spec.key, param.name, param.maximum + step, False),
                ]
        for param in spec.params:
            if param.type == ParamType.CHOICE:
                cases += [(spec.key, param.name, choice, True) for choice in param.choices]
                cases.append((spec.key, param.name, "not-a-choice", False))
    return cases


@pytest.mark.parametrize(("model", "name", "value", "ok"), bounds_cases())
def test_every_bound_of_every_parameter(model: str, name: str, value: object, ok: bool) -> None:
    params = {name: value}
    if name == "multi_band_diffusion":
        params["model_version"] = "large"  # the only models it works with
    request = JobRequest(model=model, prompt="x", params=params)
    if ok:
        validated = validate_request(request, Settings())
        assert validated.spec.build_input(validated)[validated.spec.param(name).key] == value
    else:
        with pytest.raises(InvalidRequestError, match=f"`{name}` must be"):
            validate_request(request, Settings())


@pytest.mark.parametrize(("model", "low", "high"), [("musicgen", 1, 30), ("stable-audio", 1, 47), ("song", 3, 600)])
def test_duration_bounds(model: str, low: int, high: int) -> None:
    """With the shipped settings each model has exactly its own range (the [jobs] bounds narrow nothing)."""
    settings = Settings()
    assert MODELS[model].help_text(settings).count(f"Length: {low}-{high} s") == 1
    for duration in (low, high):
        assert validate(settings, model=model, duration_s=duration).duration_s == duration
    for duration in (low - 1, high + 1):
        with pytest.raises(InvalidRequestError, match="`duration` must be between"):
            validate(settings, model=model, duration_s=duration)


def test_settings_tighten_the_limits() -> None:
    settings = Settings.model_validate({"jobs": {"max_duration_s": 10, "max_prompt_chars": 20}})
    with pytest.raises(InvalidRequestError, match="between 1 and 10") as refused:
        validate(settings, duration_s=11)
    assert "this bot's limit, the model makes 1-30 s" in str(refused.value)
    assert "Length: 3-10 s (default 10)" in MODELS["song"].help_text(settings)
    assert validate(settings, model="song").duration_s == 10  # the default, narrowed too
    with pytest.raises(InvalidRequestError, match="limit is 20"):
        validate(settings, prompt="y" * 21)


def test_a_default_length_setting_applies_to_every_model_within_its_range() -> None:
    shipped = Settings()
    assert validate(shipped).duration_s == 8  # MusicGen's own default
    assert validate(shipped, model="song").duration_s == 30
    settings = Settings.model_validate({"jobs": {"default_duration_s": 45}})
    assert validate(settings, model="song").duration_s == 45
    assert validate(settings, model="stable-audio").duration_s == 45
    assert validate(settings).duration_s == 30  # MusicGen makes at most 30 s
    assert "Length: 1-30 s (default 30)" in MODELS["musicgen"].help_text(settings)


def test_options_text() -> None:
    assert parse_options(" temperature=1.2, top_k=200  output_format=mp3") == {
        "temperature": "1.2",
        "top_k": "200",
        "output_format": "mp3",
    }
    for bad in ("temperature", "=3", "top_k=", "a=1 a=2"):
        with pytest.raises(InvalidRequestError):
            parse_options(bad)


def test_help_lists_every_parameter_with_its_range() -> None:
    for spec in MODELS.values():
        text = spec.help_text()
        for param in spec.params:
            assert f"`{param.name}`" in text
            assert param.range_text() in text


def test_the_english_catalogue_says_what_the_catalog_says() -> None:
    """A model's description and its parameters' help lines are in en-US.toml too (``models.<key>.*``, the
    source of the translations): the same words as in the catalog."""
    english = catalogues()[ENGLISH]
    for spec in MODELS.values():
        assert english[f"models.{spec.key}.about"] == spec.description
        for param in spec.params:
            assert english[f"models.{spec.key}.params.{param.name}"] == param.description


def test_help_says_where_it_runs_and_in_the_readers_language() -> None:
    billed, own = Host("Replicate"), Host("the Cog server ([cog] base_url)", billed=False)
    assert MUSICGEN.help_text(host=billed).splitlines()[1].endswith(" s on Replicate.")
    assert "Runs on your own Cog server: no per-run cost." in MUSICGEN.help_text(host=own)
    german = MUSICGEN.help_text(host=own, translate=lambda key, params: text("de", key, **params))
    assert "Kann: setzt einen Clip fort, folgt der Melodie eines Clips, Text zu Musik." in german
    assert "Läuft auf deinem eigenen Cog-Server: keine Kosten pro Lauf." in german
    assert "• `temperature`: höher ist abenteuerlicher (0 bis 5; Standard 1)" in german


@pytest.mark.parametrize(
    ("model", "name", "value", "sent"),
    [
        ("musicgen", "multi_band_diffusion", "yes", True),
        ("musicgen", "multi_band_diffusion", "off", False),
        ("stable-audio", "negative_prompt", "  no\tvocals ", "no vocals"),
        ("riffusion", "prompt_b", "electronic beats", "electronic beats"),
    ],
)
def test_text_and_boolean_parameters_reach_the_input(model: str, name: str, value: str, sent: object) -> None:
    params = {name: value, **({"model_version": "large"} if model == "musicgen" else {})}
    validated = validate_request(JobRequest(model=model, prompt="x", params=params), Settings())
    assert validated.spec.build_input(validated)[name] == sent


def test_cost_estimates() -> None:
    validated = validate(duration_s=10, count=2)
    assert validated.spec.estimate_cost_usd(validated) == pytest.approx(2 * 10 * 0.0023)
    assert "Roughly $" in validated.spec.help_text()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"params": {"continuation": True}}, "needs an audio clip to continue"),
        ({"audio_s": 5.0, "params": {"model_version": "stereo-large"}}, "needs a melody model"),
        ({"audio_s": 10.0, "duration_s": 8, "params": {"continuation": True}}, "shorter than `duration` (8 s"),
        ({"audio_s": 40.0, "duration_s": 30, "params": {"continuation": True}}, "must be under 30 s"),
        ({"audio_s": 5.0, "duration_s": 8, "params": {"continuation": True, "continuation_start": 6}}, "past the end"),
    ],
)
def test_continuation_rules(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        validate(None, **fields)
    assert message in caught.value.user_message


def test_valid_continuation_and_melody() -> None:
    long_clip = validate(audio_s=40.0, duration_s=30, params={"continuation": True, "continuation_start": 32})
    assert long_clip.spec.build_input(long_clip)["continuation_start"] == 32  # only the last 8 s are continued
    melody = validate(audio_s=120.0, duration_s=8, params={"model_version": "melody-large"})
    assert melody.spec.build_input(melody)["model_version"] == "melody-large"


@pytest.mark.parametrize(
    ("key", "typed", "message"),
    [
        ("max_duration_s", "lots", "isn't a number"),
        ("max_duration_s", "0", "between 1 and 600"),
        ("max_duration_s", "2.5", "whole number"),
        ("guild_daily_budget_usd", "-1", "between 0 and"),
        ("channels", "#general", "isn't a channel"),
        ("roles", "admins", "isn't a role"),
        ("allowed_models", "musicgen, nope", "Models are"),
        ("default_model", "nope", "Models are"),
        ("volume", "11", "Settings are"),
    ],
)
def test_bad_admin_input_is_explained(key: str, typed: str, message: str) -> None:
    from bot.guild_settings import GuildSettings, changed

    with pytest.raises(InvalidRequestError, match=message):
        changed(GuildSettings(), key, typed)


def test_admin_input_parses_and_resets() -> None:
    from bot.guild_settings import GuildSettings, changed, shown

    settings = changed(GuildSettings(), "channels", "<#123456789012345678>, 223456789012345678")
    assert settings.channels == [123456789012345678, 223456789012345678]
    assert shown(settings, "channels") == "<#123456789012345678>, <#223456789012345678>"
    settings = changed(settings, "guild_daily_budget_usd", "2.5")
    assert settings.guild_daily_budget_usd == 2.5
    assert changed(settings, "channels", "all").channels == []
    assert changed(settings, "guild_daily_budget_usd", "default").guild_daily_budget_usd is None
