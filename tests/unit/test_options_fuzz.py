"""Property-based fuzzing of command options: whatever a user types, a request is valid or refused clearly.

This is the path of every slash command and CLI call: ``options:`` text through ``parse_options``, then
``validate_request`` against the catalog, then the model input we would send. Only InvalidRequestError
may come out, with a message that fits in a Discord reply, and a request that passes is within bounds.
"""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import event, given, settings
from hypothesis import strategies as st

from bot.catalog import MODELS, SEED_MAX, all_params, parse_options, validate_request
from bot.errors import InvalidRequestError
from bot.records import JobRequest
from tests.conftest import make_settings

SETTINGS = make_settings(Path("/nonexistent/encore-fuzz"))  # nothing is written: validation only
PARAM_NAMES = sorted(all_params())
DISCORD_MESSAGE_LIMIT = 2000

texts = st.text(max_size=60)
values = (
    texts.filter(lambda t: t.strip() and not any(c in t for c in ",= \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0"))
    | st.integers().map(str)
    | st.floats().map(str)
    | st.sampled_from(["true", "false", "mp3", "wav", "six", "two", "large", "stereo-melody-large", "0", "-1"])
)


def mostly(plausible: st.SearchStrategy, wild: st.SearchStrategy) -> st.SearchStrategy:
    """Three parts plausible input to one part anything, so both accepted and refused requests are explored."""
    return st.one_of(plausible, plausible, plausible, wild)


@st.composite
def options_for(draw: st.DrawFn, model: str) -> str:
    """``options:`` text: mostly the model's own parameters with any values, sometimes free text."""
    own = sorted(param.name for param in MODELS[model].params) if model in MODELS else []
    names = st.sampled_from(own) if own else st.sampled_from(PARAM_NAMES)
    pairs = draw(st.lists(st.tuples(names, values), max_size=3, unique_by=lambda pair: pair[0]))
    return draw(mostly(st.just(" ".join(f"{name}={value}" for name, value in pairs)), texts))


@st.composite
def commands(draw: st.DrawFn) -> tuple[str, str]:
    model = draw(mostly(st.sampled_from(sorted(MODELS)), texts))
    return model, draw(mostly(st.just(""), options_for(model)))


@settings(max_examples=400)
@given(
    command=commands(),
    prompt=mostly(st.sampled_from(["lofi beat", "  calm   piano\n", "epic orchestral trailer"]), st.text(max_size=700)),
    duration=mostly(st.none() | st.integers(min_value=1, max_value=60).map(float), st.floats()),
    seed=mostly(st.none() | st.integers(min_value=1, max_value=SEED_MAX), st.integers()),
    count=mostly(st.just(1), st.integers(min_value=-2, max_value=10)),
    audio_s=st.none() | st.floats(min_value=0.1, max_value=600),
)
def test_any_command_input_is_valid_or_refused_clearly(
    command: tuple[str, str],
    prompt: str,
    duration: float | None,
    seed: int | None,
    count: int,
    audio_s: float | None,
) -> None:
    model, options = command
    try:
        params = parse_options(options)
        request = JobRequest(
            model=model,
            prompt=prompt,
            duration_s=duration,
            seed=seed,
            count=count,
            params=params,
            audio_s=audio_s,
        )
        validated = validate_request(request, SETTINGS)
        model_input = validated.spec.build_input(validated)
    except InvalidRequestError as exc:
        event("refused")
        message = str(exc)
        assert message
        assert len(message) <= DISCORD_MESSAGE_LIMIT
        return
    event(f"accepted by {model}")
    # Accepted: everything the model will receive is within the catalog's bounds.
    spec = validated.spec
    assert spec.key == model
    assert math.isfinite(validated.duration_s)
    assert validated.prompt == validated.prompt.strip()
    assert validated.count >= 1
    if validated.seed is not None:
        assert 1 <= validated.seed <= SEED_MAX
    for name, value in validated.params.items():
        param = spec.param(name)
        if param.choices:
            assert value in param.choices
        if isinstance(value, int | float) and not isinstance(value, bool):
            assert math.isfinite(value)
            assert param.minimum is None or value >= param.minimum
            assert param.maximum is None or value <= param.maximum
    assert isinstance(model_input, dict)
