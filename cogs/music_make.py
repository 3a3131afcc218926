"""``/music`` commands that make something: generate, melody, blend, song, plan and stems (a mixin of the
``Music`` cog, ``cogs.music``). Each only translates the interaction into core calls."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.catalog import (
    MAX_BATCH,
    MODELS,
    MUSICGEN,
    RIFFUSION,
    SEED_MAX,
    SONG,
    SONG_FORMATS,
    get_model,
    validate_request,
)
from bot.discord.client import EncoreBot
from bot.discord.translator import choice
from bot.errors import InvalidRequestError
from bot.jobs.defaults import Default
from bot.jobs.loops import check_bars
from bot.jobs.tickets import ClipSource
from bot.preferences import OUTPUT_FORMAT
from bot.records import Job, JobRequest
from cogs._common import defer_card, melody_jobs, origin, post_card, send_notes, start_from_attachment
from cogs.music_options import (
    LOOP_CHOICES,
    MODEL_CHOICES,
    OPTIONS_HELP,
    SEED_IMAGE_CHOICES,
    VERSION_CHOICES,
    CommandsMixin,
    not_given,
    option_suggestions,
    params_of,
)
from cogs.plans import post_plan


class MakeCommands(CommandsMixin):
    """generate, melody, blend, song, plan, stems."""

    bot: EncoreBot

    async def _start(
        self, interaction: discord.Interaction[Any], request: JobRequest, unset: frozenset[Default] = frozenset()
    ) -> None:
        """Create the job(s) and answer with their card. Validation errors raise before anything is stored.

        What the request itself gets wrong is answered at once (unless the model is still to be chosen);
        then the answer is deferred, since the person's defaults and admission wait on the database. What the
        command wasn't given (``unset``) takes the person's own defaults, as the server allows them: filled in
        before the gate, which checks what will really be made; the person is told where the server narrowed
        them.
        """
        if not interaction.response.is_done() and Default.MODEL not in unset:
            validate_request(request, self.bot.settings)
        await defer_card(interaction)
        filled = await self.bot.service.fill_defaults(request, origin(interaction), unset)
        jobs = await self.bot.service.create(filled.request, origin(interaction))
        await post_card(self.bot, interaction, jobs)
        await send_notes(interaction, filled.notes)

    @app_commands.command(name="generate", description="Turn a description into music.")
    @app_commands.describe(
        prompt="Describe the music: genre, mood, instruments, tempo…",
        model="Which model (default MusicGen); /music models tells them apart",
        duration="Length in seconds (default 8)",
        model_version="Which MusicGen model to use",
        seed="Same seed + same prompt = a similar track; leave empty for a surprise",
        count=f"How many variations to make at once (1-{MAX_BATCH})",
        options=OPTIONS_HELP,
        loop="Also post a seamless loop of it, this many bars long (cut on the beat; WAV with loop points)",
    )
    @app_commands.choices(model=MODEL_CHOICES, model_version=VERSION_CHOICES)
    @app_commands.choices(loop=LOOP_CHOICES)
    async def music_generate(
        self,
        interaction: discord.Interaction[Any],
        prompt: app_commands.Range[str, 1, 1000],
        model: app_commands.Choice[str] | None = None,
        duration: app_commands.Range[int, 1, 300] | None = None,
        model_version: app_commands.Choice[str] | None = None,
        seed: app_commands.Range[int, 1, SEED_MAX] | None = None,
        count: app_commands.Range[int, 1, MAX_BATCH] | None = None,
        options: app_commands.Range[str, 1, 500] | None = None,
        loop: app_commands.Choice[int] | None = None,
    ) -> None:
        version = model_version.value if model_version else None
        params = params_of(options, model_version=version)
        if version is not None and model is not None and get_model(model.value) is not MUSICGEN:
            raise InvalidRequestError.keyed("refusals.model_version_musicgen")
        # No model named: the person's default, else the server's (a MusicGen version names MusicGen).
        key = model.value if model else MUSICGEN.key
        unset = not_given(
            model=model is None and version is None,
            length=duration is None,
            format=OUTPUT_FORMAT not in params,
            count=count is None,
        )
        request = JobRequest(
            model=key,
            prompt=prompt,
            duration_s=duration,
            seed=seed,
            count=count or 1,
            params=params,
            context={"loop_bars": check_bars(loop.value)} if loop else {},
        )
        await self._start(interaction, request, unset)

    @app_commands.command(name="melody", description="Music that follows the melody of a clip (or continues it).")
    @app_commands.describe(
        audio="A clip whose melody to follow: hum into a voice message, or any audio file",
        prompt="How it should sound: instruments, genre, mood…",
        duration="Length in seconds (default 8)",
        model_version="Which melody model to use",
        seed="Same seed + same prompt = a similar track",
        options="Advanced settings, e.g. continuation=true temperature=1.2 (see /music models)",
    )
    @app_commands.choices(model_version=VERSION_CHOICES)
    async def music_melody(
        self,
        interaction: discord.Interaction[Any],
        audio: discord.Attachment,
        prompt: app_commands.Range[str, 1, 1000],
        duration: app_commands.Range[int, 1, 300] | None = None,
        model_version: app_commands.Choice[str] | None = None,
        seed: app_commands.Range[int, 1, SEED_MAX] | None = None,
        options: app_commands.Range[str, 1, 500] | None = None,
    ) -> None:
        params = params_of(options, model_version=model_version.value if model_version else "stereo-melody-large")
        notes: list[str] = []
        # Everything but the clip is checked first (privately); the clip once downloaded and read.
        await start_from_attachment(
            self.bot,
            interaction,
            audio,
            lambda clip: melody_jobs(
                self.bot, interaction, clip, prompt=prompt, duration_s=duration, params=params, seed=seed, notes=notes
            ),
            keep_file=False,  # the job keeps its prepared clip
        )
        await send_notes(interaction, notes)

    @app_commands.command(name="blend", description="A short riff that blends two prompts (Riffusion).")
    @app_commands.describe(
        prompt_a="Where it starts: e.g. 'church bells'",
        prompt_b="Where it goes: e.g. 'electronic beats'",
        alpha="0 is all the first prompt, 1 all the second (default 0.5)",
        denoising="How far to move from the seed image, 0-1 (default 0.75)",
        steps="Diffusion steps, 1-100 (default 50)",
        seed_image="The spectrogram to start from (default vibes)",
        count=f"How many variations to make at once (1-{MAX_BATCH})",
    )
    @app_commands.choices(seed_image=SEED_IMAGE_CHOICES)
    async def music_blend(
        self,
        interaction: discord.Interaction[Any],
        prompt_a: app_commands.Range[str, 1, 500],
        prompt_b: app_commands.Range[str, 1, 500],
        alpha: app_commands.Range[float, 0.0, 1.0] | None = None,
        denoising: app_commands.Range[float, 0.0, 1.0] | None = None,
        steps: app_commands.Range[int, 1, 100] | None = None,
        seed_image: app_commands.Choice[str] | None = None,
        count: app_commands.Range[int, 1, MAX_BATCH] | None = None,
    ) -> None:
        params = params_of(
            None,
            prompt_b=prompt_b,
            alpha=alpha,
            denoising=denoising,
            num_inference_steps=steps,
            seed_image_id=seed_image.value if seed_image else None,
        )
        request = JobRequest(model=RIFFUSION.key, prompt=prompt_a, params=params, count=count or 1)
        await self._start(interaction, request, not_given(count=count is None))

    @app_commands.command(name="song", description="A full song with vocals and lyrics (ElevenLabs Music).")
    @app_commands.describe(
        prompt="What the song is about and how it sounds: genre, mood, voice, story…",
        length="Length in seconds, 3-600 (default 30)",
        instrumental="No vocals",
        seed="A seed for a similar song next time (uses a composition plan)",
        format="Audio format and quality (default mp3 128 kb/s)",
    )
    @app_commands.choices(format=[app_commands.Choice(name=f, value=f) for f in SONG_FORMATS])
    async def music_song(
        self,
        interaction: discord.Interaction[Any],
        prompt: app_commands.Range[str, 1, 4100],
        length: app_commands.Range[int, 3, 600] | None = None,
        instrumental: bool | None = None,
        seed: app_commands.Range[int, 1, SEED_MAX] | None = None,
        format: app_commands.Choice[str] | None = None,
    ) -> None:
        params = params_of(None, instrumental=instrumental, output_format=format.value if format else None)
        request = JobRequest(model=SONG.key, prompt=prompt, duration_s=length, seed=seed, params=params)
        await self._start(interaction, request, not_given(length=length is None, format=format is None))

    @app_commands.command(name="plan", description="Plan a song (ElevenLabs): edit its sections, then compose.")
    @app_commands.describe(prompt="What the song is about and how it sounds", length="Length in seconds, 3-600")
    async def music_plan(
        self,
        interaction: discord.Interaction[Any],
        prompt: app_commands.Range[str, 1, 4100],
        length: app_commands.Range[int, 3, 600] | None = None,
    ) -> None:
        await self.bot.service.check_text([("prompt", prompt)], interaction.guild_id)  # privately, before the defer
        await interaction.response.defer(thinking=True)
        record = await self.bot.service.make_plan(prompt, origin(interaction), length_s=length)
        await post_plan(self.bot, interaction, record)

    @app_commands.command(name="stems", description="Split a track into stems (vocals, drums, bass…).")
    @app_commands.describe(audio="The track to split", stems="Two (vocals + the rest) or six (default)")
    @app_commands.choices(stems=[choice("two", "two", "stems.two"), choice("six", "six", "stems.six")])
    async def music_stems(
        self,
        interaction: discord.Interaction[Any],
        audio: discord.Attachment,
        stems: app_commands.Choice[str] | None = None,
    ) -> None:
        async def split(clip: ClipSource) -> list[Job]:
            job = await self.bot.service.split_stems(
                clip, origin(interaction), stems=stems.value if stems else "six", name=audio.filename
            )
            return [job]

        await start_from_attachment(self.bot, interaction, audio, split, keep_file=True)

    # -- autocomplete ---------------------------------------------------------------------------

    @music_generate.autocomplete("options")
    async def _generate_options_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        model = interaction.namespace.model
        spec = MODELS.get(model) if isinstance(model, str) else None
        return option_suggestions(spec or MUSICGEN, current, interaction.locale)

    @music_melody.autocomplete("options")
    async def _melody_options_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return option_suggestions(MUSICGEN, current, interaction.locale)
