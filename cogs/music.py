"""``/music``: generate, melody, blend, models and cancel. The cog only translates interactions into core calls.

Options, choices, help and autocomplete come from the catalog (``bot.catalog``); nothing here knows a
model's parameters beyond the few common ones that get a slash option of their own.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.audio.loop import BAR_CHOICES
from bot.catalog import (
    MAX_BATCH,
    MODELS,
    MUSICGEN,
    MUSICGEN_VERSIONS,
    RIFFUSION,
    RIFFUSION_SEED_IMAGES,
    SEED_MAX,
    SONG,
    SONG_FORMATS,
    TEXT_MODELS,
    ModelSpec,
    ParamType,
    Translate,
    get_model,
    parse_options,
    validate_request,
)
from bot.discord.client import EncoreBot
from bot.discord.delivery import DiscordDelivery
from bot.discord.render import build_card, phase_text
from bot.discord.translator import choice
from bot.errors import InvalidRequestError
from bot.jobs.access import Action
from bot.jobs.defaults import Default
from bot.jobs.loops import check_bars
from bot.jobs.phase import phase_of
from bot.jobs.tickets import ClipSource
from bot.locales import ENGLISH, localized
from bot.locales import text as say
from bot.preferences import FORMATS, OUTPUT_FORMAT, Preferences, describe, narrowed_here
from bot.records import Job, JobRequest
from cogs._common import (
    DiscordActor,
    card_locale,
    defer_card,
    delivery_of,
    melody_jobs,
    origin,
    post_card,
    send_notes,
    start_from_attachment,
)
from cogs.plans import post_plan
from cogs.variations import card_view_with_variations
from cogs.views import CancelButton, HistoryButton, ResultButton, history_page

log = logging.getLogger(__name__)

_MODEL_CHOICES = [app_commands.Choice(name=spec.display_name, value=spec.key) for spec in TEXT_MODELS]
_VERSION_CHOICES = [app_commands.Choice(name=version, value=version) for version in MUSICGEN_VERSIONS]
_SEED_IMAGE_CHOICES = [app_commands.Choice(name=name, value=name) for name in RIFFUSION_SEED_IMAGES]
_LOOP_CHOICES = [choice(f"{n} bar{'s' if n > 1 else ''}", n, f"loop.{n}") for n in BAR_CHOICES]
_OPTIONS_HELP = "Advanced settings as name=value pairs, e.g. temperature=1.2 top_k=200 (see /music models)"


def _params(options: str | None, **common: Any) -> dict[str, Any]:
    """The advanced ``options`` text plus the common options that were given."""
    params = parse_options(options) if options else {}
    for name, value in common.items():
        if value is not None:
            if name in params:
                raise InvalidRequestError.keyed("refusals.option_twice_both", name=name)
            params[name] = value
    return params


def _unset(**missing: bool) -> frozenset[Default]:
    """The options a command was not given (``model=True``…), which the person's own defaults may fill."""
    return frozenset(Default(name) for name, absent in missing.items() if absent)


def defaults_text(prefs: Preferences, locale: object = ENGLISH) -> str:
    """A person's defaults on one line, for /music usage."""
    if prefs.empty:
        return say(locale, "usage.no_defaults")
    return " · ".join(f"{what}: {value}" for what, value in describe(prefs, locale))


def in_locale(locale: object) -> Translate:
    """The catalog's help words (``models.*``) in ``locale``."""
    return lambda key, params: say(locale, key, **params)


def option_suggestions(spec: ModelSpec, current: str, locale: object = ENGLISH) -> list[app_commands.Choice[str]]:
    """Autocomplete for ``options``: the text so far, completed with a parameter name or one of its values; what
    a parameter takes in ``locale`` (the catalog's help words, as /music models says them)."""
    translate = in_locale(locale)
    head, _, last = current.rpartition(" ")
    prefix = f"{head} " if head else ""
    used = {part.partition("=")[0] for part in head.split()}
    name, has_value, value = last.partition("=")
    choices: list[app_commands.Choice[str]] = []
    if has_value:
        try:
            param = spec.param(name)
        except InvalidRequestError:
            return []
        values = list(param.choices) if param.type == ParamType.CHOICE else []
        if param.type == ParamType.BOOLEAN:
            values = ["true", "false"]
        for candidate in values:
            if candidate.startswith(value):
                text = f"{prefix}{name}={candidate}"
                choices.append(app_commands.Choice(name=text[-100:], value=text[:100]))
        if not choices:
            text = current.strip() or f"{name}="
            label = f"{text} — {param.name}: {param.range_text(translate)}"
            choices.append(app_commands.Choice(name=label[:100], value=text[:100]))
        return choices[:25]
    for param in spec.advanced_params:
        if param.name in used or not param.name.startswith(name):
            continue
        default = "" if param.default is None else f"={param.default}"
        text = f"{prefix}{param.name}{default}"
        label = f"{prefix}{param.name}=… ({param.range_text(translate)})"
        choices.append(app_commands.Choice(name=label[-100:], value=text[:100]))
    return choices[:25]


@app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
@app_commands.allowed_installs(guilds=True, users=False)
class Music(commands.GroupCog, group_name="music", group_description="Make music from words and sounds."):
    def __init__(self, bot: EncoreBot) -> None:
        self.bot = bot
        super().__init__()

    @property
    def delivery(self) -> DiscordDelivery:
        return delivery_of(self.bot)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(CancelButton, ResultButton, HistoryButton)
        self.delivery.view_factory = card_view_with_variations

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(CancelButton, ResultButton, HistoryButton)

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

    # -- commands -------------------------------------------------------------------------------

    @app_commands.command(name="generate", description="Turn a description into music.")
    @app_commands.describe(
        prompt="Describe the music: genre, mood, instruments, tempo…",
        model="Which model (default MusicGen); /music models tells them apart",
        duration="Length in seconds (default 8)",
        model_version="Which MusicGen model to use",
        seed="Same seed + same prompt = a similar track; leave empty for a surprise",
        count=f"How many variations to make at once (1-{MAX_BATCH})",
        options=_OPTIONS_HELP,
        loop="Also post a seamless loop of it, this many bars long (cut on the beat; WAV with loop points)",
    )
    @app_commands.choices(model=_MODEL_CHOICES, model_version=_VERSION_CHOICES)
    @app_commands.choices(loop=_LOOP_CHOICES)
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
        params = _params(options, model_version=version)
        if version is not None and model is not None and get_model(model.value) is not MUSICGEN:
            raise InvalidRequestError.keyed("refusals.model_version_musicgen")
        # No model named: the person's default, else the server's (a MusicGen version names MusicGen).
        key = model.value if model else MUSICGEN.key
        unset = _unset(
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
    @app_commands.choices(model_version=_VERSION_CHOICES)
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
        params = _params(options, model_version=model_version.value if model_version else "stereo-melody-large")
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
    @app_commands.choices(seed_image=_SEED_IMAGE_CHOICES)
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
        params = _params(
            None,
            prompt_b=prompt_b,
            alpha=alpha,
            denoising=denoising,
            num_inference_steps=steps,
            seed_image_id=seed_image.value if seed_image else None,
        )
        request = JobRequest(model=RIFFUSION.key, prompt=prompt_a, params=params, count=count or 1)
        await self._start(interaction, request, _unset(count=count is None))

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
        params = _params(None, instrumental=instrumental, output_format=format.value if format else None)
        request = JobRequest(model=SONG.key, prompt=prompt, duration_s=length, seed=seed, params=params)
        await self._start(interaction, request, _unset(length=length is None, format=format is None))

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

    @app_commands.command(name="prefer", description="Your own defaults: model, length, format and variations.")
    @app_commands.describe(
        model="The model /music generate uses when you name none",
        length="Length in seconds when you give none (generate, melody, song)",
        format="The kind of file, where the model makes it (generate, melody, song)",
        variations=f"How many variations at once when you give no count (1-{MAX_BATCH}; generate, blend)",
        clear="Forget your defaults first (then keep any given here)",
    )
    @app_commands.choices(model=_MODEL_CHOICES, format=[app_commands.Choice(name=f, value=f) for f in FORMATS])
    async def music_prefer(
        self,
        interaction: discord.Interaction[Any],
        model: app_commands.Choice[str] | None = None,
        length: app_commands.Range[int, 1, 600] | None = None,
        format: app_commands.Choice[str] | None = None,
        variations: app_commands.Range[int, 1, MAX_BATCH] | None = None,
        clear: bool = False,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # they live in the database
        service, user_id = self.bot.service, interaction.user.id
        given = {
            "model": model.value if model else None,
            "duration_s": length,
            "format": format.value if format else None,
            "count": variations,
        }
        changes = {name: value for name, value in given.items() if value is not None}
        prefs = Preferences() if clear else await service.preferences(user_id)
        if clear or changes:
            prefs = await service.save_preferences(user_id, prefs.model_copy(update=changes))
            log.info("user %s set preferences %s (cleared first: %s)", user_id, changes, clear)
        notes = narrowed_here(prefs, await service.guild_settings(interaction.guild_id), self.bot.settings)
        locale = interaction.locale
        if clear and prefs.empty:
            title = say(locale, "prefer.cleared")
        else:
            title = say(locale, "prefer.saved") if clear or changes else say(locale, "prefer.title")
        embed = discord.Embed(title=title, colour=discord.Colour.blurple())
        for what, value in describe(prefs, locale):
            embed.add_field(name=what, value=value, inline=True)
        if notes:
            here = "\n".join(f"• {localized(locale, note)}" for note in notes)[:1024]
            embed.add_field(name=say(locale, "prefer.on_this_server"), value=here, inline=False)
        embed.set_footer(text=say(locale, "prefer.footer"))
        await interaction.followup.send(embed=embed, ephemeral=True)

    @app_commands.command(name="usage", description="How much music you have left today.")
    async def music_usage(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # the day's totals come from the database
        limits = self.bot.settings.limits
        service = self.bot.service
        usage = await service.usage(interaction.user.id, interaction.guild_id)
        locale = interaction.locale

        def of(used: float, limit: float, unit: str = "") -> str:
            if limit:
                return say(locale, "usage.of", used=f"{used:g}{unit}", limit=f"{limit:g}{unit}")
            return say(locale, "usage.no_limit", used=f"{used:g}{unit}")

        def name(key: str) -> str:
            return say(locale, f"usage.{key}")

        embed = discord.Embed(title=name("title"), colour=discord.Colour.blurple())
        if service.paused:
            embed.description = name("paused")
        embed.add_field(name=name("tracks"), value=of(usage.user_jobs, limits.user_daily_jobs), inline=True)
        embed.add_field(
            name=name("seconds"), value=of(round(usage.user_audio_s), limits.user_daily_audio_s, " s"), inline=True
        )
        in_flight = of(usage.user_in_flight, limits.user_jobs_in_flight)
        embed.add_field(name=name("in_progress"), value=in_flight, inline=True)
        prefs = await service.preferences(interaction.user.id)
        narrowed = narrowed_here(prefs, await service.guild_settings(interaction.guild_id), self.bot.settings)
        mine = defaults_text(prefs, locale) + "".join(f"\n• {localized(locale, note)}" for note in narrowed)
        embed.add_field(name=name("defaults"), value=mine[:1024], inline=False)
        permissions = interaction.permissions
        if interaction.guild_id is not None and (permissions.manage_guild or permissions.administrator):
            embed.add_field(name=name("server_tracks"), value=of(usage.guild_jobs, limits.guild_daily_jobs))
            embed.add_field(
                name=name("server_seconds"),
                value=of(round(usage.guild_audio_s), limits.guild_daily_audio_s, " s"),
                inline=True,
            )
            spent = f"${usage.guild_cost_usd:.2f}"
            if limits.guild_daily_budget_usd:
                spent = say(locale, "usage.of", used=spent, limit=f"${limits.guild_daily_budget_usd:.2f}")
            embed.add_field(name=name("server_budget"), value=spent, inline=True)
        embed.set_footer(text=name("footer"))
        await interaction.followup.send(embed=embed, ephemeral=True)

    @app_commands.command(name="help", description="A short guide to Encore.")
    async def music_help(self, interaction: discord.Interaction[Any]) -> None:
        locale = interaction.locale
        embed = discord.Embed(title=say(locale, "help.title"), colour=discord.Colour.blurple())
        embed.description = say(locale, "help.body")
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="models", description="What each model can do, and every setting it takes.")
    @app_commands.describe(model="Show only this model")
    @app_commands.choices(model=[app_commands.Choice(name=s.display_name, value=s.key) for s in MODELS.values()])
    async def music_models(
        self, interaction: discord.Interaction[Any], model: app_commands.Choice[str] | None = None
    ) -> None:
        specs = [get_model(model.value)] if model else list(MODELS.values())
        settings, locale = self.bot.settings, interaction.locale
        translate = in_locale(locale)
        embeds = []
        for spec in specs:
            help_text = spec.help_text(settings, host=self.bot.registry.host(spec, settings), translate=translate)
            embed = discord.Embed(title=spec.display_name, description=help_text[:4096])
            embed.set_footer(text=say(locale, "models.footer"))
            embeds.append(embed)
        await interaction.response.send_message(embeds=embeds, ephemeral=True)

    @app_commands.command(name="cancel", description="Cancel one of your jobs (your latest if none is given).")
    @app_commands.describe(job="The job id (shown on the card)")
    async def music_cancel(self, interaction: discord.Interaction[Any], job: str | None = None) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # a database write, then the provider
        service = self.bot.service
        if job is None:
            active = await service.jobs_of(interaction.user.id, active_only=True, limit=1)
            if not active:
                await interaction.followup.send(say(interaction.locale, "replies.no_jobs"), ephemeral=True)
                return
            job = active[0].id
        canceled = await service.cancel(job.strip().lower(), DiscordActor(interaction))
        phase = phase_text(phase_of(canceled.status), interaction.locale).lower()
        text = say(interaction.locale, "replies.canceled", id=canceled.id, phase=phase)
        await interaction.followup.send(text, ephemeral=True)

    @app_commands.command(name="show", description="Post a job's card again, with working buttons.")
    @app_commands.describe(job="The job id (from the card or /music history)")
    async def music_show(self, interaction: discord.Interaction[Any], job: str) -> None:
        job_id = job.strip().lower()
        await self.bot.service.job_for(job_id, DiscordActor(interaction), Action.SHOW)
        card_job, phase, members = await self.bot.service.card(job_id)
        locale = card_locale(interaction)
        await interaction.response.send_message(
            embed=build_card(card_job, phase, members, locale=locale),
            view=card_view_with_variations(card_job, phase, members, locale=locale),
        )

    @app_commands.command(name="history", description="Your recent tracks.")
    @app_commands.describe(page="Which page (1 is the newest)")
    async def music_history(
        self, interaction: discord.Interaction[Any], page: app_commands.Range[int, 1, 10000] = 1
    ) -> None:
        embed, view = await history_page(self.bot, interaction.user.id, page - 1, locale=interaction.locale)
        await interaction.response.send_message(embed=embed, view=view, ephemeral=True)

    # -- autocomplete ---------------------------------------------------------------------------

    @music_cancel.autocomplete("job")
    async def _cancel_job_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        jobs = await self.bot.service.jobs_of(interaction.user.id, active_only=True, limit=25)
        choices = []
        for job in jobs:
            label = f"{job.id} · {job.prompt}"
            if current.lower() in label.lower():
                choices.append(app_commands.Choice(name=label[:100], value=job.id))
        return choices

    @music_show.autocomplete("job")
    async def _show_job_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        jobs = await self.bot.service.jobs_of(interaction.user.id, limit=25)
        return [
            app_commands.Choice(name=f"{job.id} · {job.prompt}"[:100], value=job.id)
            for job in jobs
            if current.lower() in f"{job.id} {job.prompt}".lower()
        ]

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

    # -- audio in -------------------------------------------------------------------------------


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, EncoreBot)
    await bot.add_cog(Music(bot))
