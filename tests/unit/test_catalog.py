from __future__ import annotations

import pytest

from bot.catalog import SEED_MAX, ValidatedRequest, validate_request
from bot.config import Settings
from bot.errors import InvalidRequestError
from bot.jobs.models import JobRequest


def validate(settings: Settings | None = None, **fields: object) -> ValidatedRequest:
    return validate_request(JobRequest.model_validate({"prompt": "lofi beat", **fields}), settings or Settings())


def test_defaults_build_the_musicgen_input() -> None:
    validated = validate()
    assert validated.duration_s == 8
    assert validated.spec.build(validated) == {
        "prompt": "lofi beat",
        "duration": 8,
        "model_version": "stereo-melody-large",
        "output_format": "wav",
        "normalization_strategy": "loudness",
    }


def test_all_options() -> None:
    validated = validate(duration_s=30, seed=7, params={"model_version": "large"})
    built = validated.spec.build(validated)
    assert (built["duration"], built["seed"], built["model_version"]) == (30, 7, "large")


def test_prompt_is_normalised() -> None:
    assert validate(prompt="  warm\x00 lofi\n\n beat  ").prompt == "warm lofi beat"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": " \n\t "}, "prompt is empty"),
        ({"prompt": "x" * 501}, "501 characters long; the limit is 500"),
        ({"duration_s": 0}, "`duration` must be between 1 and 30"),
        ({"duration_s": 31}, "`duration` must be between 1 and 30"),
        ({"params": {"model_version": "huge"}}, "`model_version` must be one of: stereo-melody-large"),
        ({"params": {"temperature": "2"}}, "has no parameter `temperature`"),
        ({"seed": 0}, "`seed` must be between 1 and"),
        ({"seed": SEED_MAX + 1}, "`seed` must be between 1 and"),
        ({"model": "nope"}, "I don't know the model `nope`"),
    ],
)
def test_bad_input_gets_a_clear_message(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        validate(None, **fields)
    assert message in caught.value.user_message


def test_settings_tighten_the_limits() -> None:
    settings = Settings.model_validate({"jobs": {"max_duration_s": 10, "max_prompt_chars": 20}})
    with pytest.raises(InvalidRequestError, match="between 1 and 10"):
        validate(settings, duration_s=11)
    with pytest.raises(InvalidRequestError, match="limit is 20"):
        validate(settings, prompt="y" * 21)
