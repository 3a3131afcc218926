"""What a registry derives from its providers' declarations: the settings' schema (a provider's own section,
the names ``[models.*] provider`` may take), with the same one-line errors as every other setting. Shown with
a provider added by one registration (``tests/plugins/gpubox.py``), which ``bot/`` knows nothing of."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bot.config import Secrets, describe
from bot.errors import ConfigError
from bot.providers.registry import PROVIDERS
from tests.plugins import gpubox
from tests.plugins.gpubox import GpuBoxSettings

WITH_BOX = PROVIDERS.adding(gpubox.PROVIDER)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("ENCORE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray ./config.toml


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_registered_providers_section_is_read_from_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config(tmp_path, '[models.musicgen]\nprovider = "gpubox"\n\n[gpubox]\njobs_at_once = 3\n')
    monkeypatch.setenv("ENCORE_GPUBOX__BASE_URL", "http://gpu-box:5000")
    monkeypatch.setenv("ENCORE_GPUBOX__UPLOAD_SECRET", "box-secret-0123456789")

    settings = WITH_BOX.load_settings(path)

    box = settings.section("gpubox", GpuBoxSettings)
    assert (str(box.base_url), box.jobs_at_once) == ("http://gpu-box:5000/", 3)
    assert settings.models.musicgen.provider == "gpubox"
    assert WITH_BOX.capacity_caps(settings)["gpubox"] == 3
    text = describe(settings, Secrets())
    assert "[gpubox]\nbase_url = " in text
    assert 'upload_secret = "set (hidden)"' in text
    assert "box-secret" not in text


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[gpubox]\njobs_at_once = 99\n", "[gpubox] jobs_at_once: Input should be less than or equal to 8"),
        ("[gpubox]\njobs_at_once = 99\n", "(env ENCORE_GPUBOX__JOBS_AT_ONCE)"),
        ("[gpubox]\ncolour = 'blue'\n", "[gpubox] colour: unknown setting (env ENCORE_GPUBOX__COLOUR)"),
        ("[gpubox]\nbase_url = 'not a url'\n", "[gpubox] base_url"),
        ("[gpubox]\nupload_secret = 'box-secret-0123456789'\n", "set ENCORE_GPUBOX__UPLOAD_SECRET in the environment"),
        (
            "[models.musicgen]\nprovider = 'gpu'\n",
            "[models] musicgen.provider: Input should be 'replicate', 'cog', 'elevenlabs' or 'gpubox'",
        ),
    ],
    ids=["out-of-range", "names-the-variable", "unknown-key", "bad-url", "secret-in-file", "unknown-provider"],
)
def test_a_registered_providers_settings_are_refused_in_one_clear_line(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as refused:
        WITH_BOX.load_settings(config(tmp_path, text))
    assert named in refused.value.user_message


def test_a_provider_nobody_registered_has_no_section_and_no_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gpubox: unknown setting"):
        PROVIDERS.load_settings(config(tmp_path, "[gpubox]\njobs_at_once = 2\n"))
    with pytest.raises(ConfigError, match=r"\[models\] musicgen.provider"):
        PROVIDERS.load_settings(config(tmp_path, '[models.musicgen]\nprovider = "gpubox"\n'))
    with pytest.raises(ConfigError, match=r"there is no \[gpubox\] section"):
        PROVIDERS.settings().section("gpubox", GpuBoxSettings)


def test_a_provider_needs_a_name_of_its_own() -> None:
    with pytest.raises(ValueError, match="two providers are named 'gpubox'"):
        WITH_BOX.adding(gpubox.PROVIDER)
    jobs = dataclasses.replace(gpubox.PROVIDER, name="jobs")
    with pytest.raises(ValueError, match="must be new sections"):
        _ = PROVIDERS.adding(jobs).settings_model  # [jobs] is Encore's own
