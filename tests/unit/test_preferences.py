"""A person's defaults: checked at the edge, stored whole, filled in only where a command left an option out, and
narrowed (never widened) by a server's rules."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.catalog import MUSICGEN, SONG, STABLE_AUDIO
from bot.errors import InvalidRequestError
from bot.guild_settings import GuildSettings
from bot.jobs.defaults import Default, Defaults
from bot.preferences import Preferences, checked, format_setting, formats_of
from bot.records import JobOrigin, JobRequest
from bot.storage.db import Database
from bot.storage.prefs_repo import PreferencesRepo
from tests.conftest import make_settings


@pytest.mark.parametrize(
    ("prefs", "says"),
    [
        (Preferences(model="song"), "I don't know the model"),  # /music generate doesn't offer songs
        (Preferences(model="<@everyone>"), "I don't know the model"),
        (Preferences(model="musicgen", duration_s=31), "MusicGen makes 1-30 s here"),
        (Preferences(duration_s=0), "lengths are 1-600 s here"),
        (Preferences(format="flac"), "Formats are: wav, mp3, opus"),
        (Preferences(model="riffusion", format="mp3"), "Riffusion doesn't make mp3"),
        (Preferences(count=5), "between 1 and 4"),
        (Preferences(count=0), "between 1 and 4"),
    ],
)
def test_bad_preferences_are_refused_with_a_reason(tmp_path: Path, prefs: Preferences, says: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        checked(prefs, make_settings(tmp_path))
    assert says in refused.value.user_message


def test_kinds_of_file_map_to_each_models_own_setting() -> None:
    assert formats_of(MUSICGEN) == ("wav", "mp3")
    assert formats_of(SONG) == ("mp3", "opus", "wav")
    assert formats_of(STABLE_AUDIO) == ("wav",)
    assert format_setting(MUSICGEN, "mp3") == "mp3"
    assert format_setting(SONG, "opus") == "opus_48000_128"
    assert format_setting(SONG, "wav") == "pcm_44100"
    assert format_setting(SONG, "mp3", "mp3_44100_192") == "mp3_44100_192"  # the bot's own choice of that kind
    assert format_setting(STABLE_AUDIO, "wav") is None  # nothing to set: it makes only WAV


async def test_stored_whole_per_person_and_the_table_refuses_nonsense(tmp_path: Path) -> None:
    async with Database(tmp_path / "db.sqlite3") as db:
        repo = PreferencesRepo(db)
        await repo.save(1, Preferences(model="musicgen", duration_s=12, format="mp3", count=2), now=1.0)
        await repo.save(1, Preferences(duration_s=20), now=2.0)  # replaces, whole
        assert await repo.get(1) == Preferences(duration_s=20)
        assert (await repo.get(2)).empty
        with pytest.raises(sqlite3.IntegrityError):
            await db.conn.execute("INSERT INTO user_preferences (user_id, count, updated_at) VALUES (3, 9, 0)")
        assert await repo.clear(1)
        assert not await repo.clear(1)


async def test_fill_touches_only_what_was_left_out_and_narrows_to_the_servers_rules(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    rules = GuildSettings(max_duration_s=10, allowed_models=["musicgen"])

    async def rules_for(guild_id: int | None) -> GuildSettings:
        return rules if guild_id == 5 else GuildSettings()

    async with Database(tmp_path / "db.sqlite3") as db:
        defaults = Defaults(repo=PreferencesRepo(db), rules=rules_for, settings=lambda: settings)
        await defaults.save(7, Preferences(model="stable-audio", duration_s=40, format="wav", count=3))
        asked = JobRequest(prompt="x", duration_s=2, params={"output_format": "mp3"})
        here, dm = JobOrigin(user_id=7, guild_id=5), JobOrigin(user_id=7)

        assert (await defaults.fill(asked, here, ())).request == asked  # nothing left out: nothing filled
        filled = await defaults.fill(asked, here, set(Default))
        assert (filled.request.model, filled.request.duration_s, filled.request.count) == ("musicgen", 10, 3)
        assert filled.request.params == {"output_format": "wav"}
        assert len(filled.notes) == 2  # the model and the length were narrowed, and the person is told
        anywhere = await defaults.fill(asked, dm, {Default.MODEL, Default.LENGTH})
        assert (anywhere.request.model, anywhere.request.duration_s, anywhere.notes) == ("stable-audio", 40, ())
        other = await defaults.fill(asked, JobOrigin(user_id=8, guild_id=5), set(Default))
        assert (other.request.model, other.request.duration_s, other.request.count) == ("musicgen", 2, 1)
