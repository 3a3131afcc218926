from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import Secrets, describe
from bot.errors import ConfigError
from bot.providers.cog_server import CogSettings
from bot.providers.registry import PROVIDERS, load_settings
from bot.providers.replicate_api import ReplicateSettings

# The config with Encore's providers' sections (each declared in its provider's module).
Settings = PROVIDERS.settings_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("ENCORE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray ./config.toml


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_documents_exactly_the_defaults() -> None:
    example = ROOT / "config.example.toml"
    assert load_settings(example) == Settings()
    sections = tomllib.loads(example.read_text(encoding="utf-8"))
    for name, section in Settings():
        # Secrets are documented in comments only: they are refused in the file.
        fields = {key for key, info in type(section).model_fields.items() if info.annotation != SecretStr | None}
        assert set(sections[name]) == fields, f"[{name}] keys differ from the code"


def test_defaults_without_any_file() -> None:
    settings = load_settings(None)
    assert str(settings.section("replicate", ReplicateSettings).api_base) == "https://api.replicate.com/v1"
    assert settings.webhooks.public_url is None


def test_config_toml_in_working_directory_is_picked_up(tmp_path: Path) -> None:
    write(tmp_path, "[jobs]\nmax_duration_s = 12\n")
    assert load_settings(None).jobs.max_duration_s == 12


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[replicate]\napi_base = "https://file.example/v1"\nmax_retries = 2\n')
    monkeypatch.setenv("ENCORE_REPLICATE__API_BASE", "http://127.0.0.1:9999/v1")
    monkeypatch.setenv("ENCORE_WEBHOOKS__PUBLIC_URL", "https://hooks.example.com")
    monkeypatch.setenv("ENCORE_WEBHOOKS__PORT", "8443")
    monkeypatch.setenv("ENCORE_STORAGE__DIR", "/srv/encore")
    settings = load_settings(path)
    replicate = settings.section("replicate", ReplicateSettings)
    assert str(replicate.api_base) == "http://127.0.0.1:9999/v1"
    assert replicate.max_retries == 2  # the file's other keys survive
    assert str(settings.webhooks.public_url) == "https://hooks.example.com/"
    assert settings.webhooks.port == 8443
    assert settings.storage.dir == Path("/srv/encore")


@pytest.mark.parametrize(
    ("text", "env", "named"),
    [
        ("[jobs]\nmax_duration_s = -1\n", {}, "[jobs] max_duration_s"),
        ("[jobs]\nmax_duraton_s = 5\n", {}, "[jobs] max_duraton_s: unknown setting"),
        ("[replicat]\napi_base = 'x'\n", {}, "replicat: unknown setting"),
        ('[replicate]\napi_base = "not a url"\n', {}, "[replicate] api_base"),
        ("", {"ENCORE_WEBHOOKS__PORT": "99999"}, "ENCORE_WEBHOOKS__PORT"),
        ("", {"ENCORE_LOGGING__LEVEL": "loud"}, "[logging] level"),
        ("", {"ENCORE_WEBHOOKS__PATH": "hooks"}, "[webhooks] path"),
        ('[elevenlabs]\noutput_format = "wav"\n', {}, "[elevenlabs] output_format"),
        ('[elevenlabs]\noutput_format = "ulaw_8000"\n', {}, "[elevenlabs] output_format"),
        ('[elevenlabs]\nstems_output_format = "mp3_48000_192"\n', {}, "[elevenlabs] stems_output_format"),
        ("[discord]\nshard_ids = [0, 1]\n", {}, "[discord] shard_ids: Value error, needs shard_count too"),
        ("[discord]\nshard_count = 2\nshard_ids = [2]\n", {}, "shard 2 is not one of the 2 shards (ids run from 0"),
        ("[discord]\nshard_count = 4\nshard_ids = [1, 3, 1]\n", {}, "[discord] shard_ids: Value error, lists shard 1 "),
        ("[discord]\nshard_count = -2\n", {}, "[discord] shard_count"),
        ("", {"ENCORE_DISCORD__SHARD_COUNT": "2", "ENCORE_DISCORD__SHARD_IDS": "[5]"}, "ENCORE_DISCORD__SHARD_IDS"),
    ],
)
def test_invalid_config_names_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, env: dict[str, str], named: str
) -> None:
    path = write(tmp_path, text)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert named in caught.value.user_message


def test_shards_from_the_file_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (Settings().discord.shard_count, Settings().discord.shard_ids) == (0, [])  # as Discord recommends
    path = write(tmp_path, "[discord]\nshard_count = 6\nshard_ids = [5, 0, 3]\n")
    assert load_settings(path).discord.shard_ids == [0, 3, 5]
    monkeypatch.setenv("ENCORE_DISCORD__SHARD_IDS", "[4]")  # one process of several, set by its deployment
    settings = load_settings(path)
    assert (settings.discord.shard_count, settings.discord.shard_ids) == (6, [4])


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[jobs\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")


def test_secrets_come_only_from_the_environment_and_are_masked(tmp_path: Path) -> None:
    # A token in the file is an unknown key, not a secret source.
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(write(tmp_path, '[replicate]\napi_token = "r8_secret"\n'))
    secrets = PROVIDERS.secrets_from_env({"DISCORD_TOKEN": "discord-secret-token", "REPLICATE_API_TOKEN": "r8_abcdef"})
    assert isinstance(secrets.get("REPLICATE_API_TOKEN"), SecretStr)
    text = describe(Settings(), secrets) + repr(secrets) + str(secrets)
    assert "discord-secret-token" not in text
    assert "r8_abcdef" not in text
    assert "DISCORD_TOKEN: set (hidden)" in text
    assert "REPLICATE_WEBHOOK_SECRET: not set" in text
    assert Secrets.from_env({"DISCORD_TOKEN": "  "}).discord_token is None


def test_cog_upload_secret_only_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_file = tmp_path / "with-secret.toml"
    in_file.write_text('[cog]\nupload_secret = "0123456789abcdef"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="ENCORE_COG__UPLOAD_SECRET in the environment"):
        load_settings(in_file)
    monkeypatch.setenv("ENCORE_COG__UPLOAD_SECRET", "s3cret-s3cret-s3cret")
    cog = load_settings(None).section("cog", CogSettings)
    assert cog.upload_secret is not None
    assert cog.upload_secret.get_secret_value() == "s3cret-s3cret-s3cret"
    text = describe(load_settings(None), Secrets())
    assert "s3cret" not in text
    assert 'upload_secret = "set (hidden)"' in text
    monkeypatch.setenv("ENCORE_COG__UPLOAD_SECRET", "short")
    with pytest.raises(ConfigError, match="upload_secret"):
        load_settings(None)


def test_models_route_to_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCORE_MODELS__MUSICGEN__PROVIDER", "cog")
    monkeypatch.setenv("ENCORE_COG__BASE_URL", "http://gpu-box:5000")
    settings = load_settings(None)
    assert settings.models.musicgen.provider == "cog"
    assert settings.models.riffusion.provider == "replicate"
    assert settings.models.musicgen.ref.startswith("meta/musicgen:")  # the rest of the table is kept
    monkeypatch.setenv("ENCORE_MODELS__MUSICGEN__PROVIDER", "elsewhere")
    with pytest.raises(ConfigError, match=r"\[models\] musicgen.provider"):
        load_settings(None)


def test_the_audio_lives_in_files_dir_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several processes share one files directory (a volume each mounts); the database and scratch stay in dir."""
    storage = Settings().storage
    assert (storage.outputs_dir, storage.inputs_dir, storage.uploads_dir) == (
        Path("data/outputs"),
        Path("data/inputs"),
        Path("data/uploads"),
    )
    monkeypatch.setenv("ENCORE_STORAGE__FILES_DIR", "/shared/encore")
    storage = load_settings(write(tmp_path, '[storage]\ndir = "/var/lib/encore"\n')).storage
    assert (storage.outputs_dir, storage.inputs_dir, storage.uploads_dir) == (
        Path("/shared/encore/outputs"),
        Path("/shared/encore/inputs"),
        Path("/shared/encore/uploads"),
    )
    assert storage.database_path == Path("/var/lib/encore/encore.sqlite3")
