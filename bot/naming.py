"""What a finished job's files are called and tagged with, wherever they go (Discord or the terminal).

Discord-free, so the CLI writes its files by the same rules without loading discord.py.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from bot.audio.loop import Loop, loop_name
from bot.catalog import MODELS
from bot.providers.registry import PROVIDERS
from bot.records import Job


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def model_label(job: Job) -> str:
    spec = MODELS.get(job.model)
    if spec is None:
        return job.model
    version = job.input.get("model_version") if any(p.name == "model_version" for p in spec.params) else None
    return f"{spec.display_name} ({version})" if version else spec.display_name


def seed_label(job: Job) -> str:
    seed = job.seed if job.seed is not None else job.request.get("seed")
    return f"seed {seed}" if seed is not None else f"variation {job.batch_index + 1}"


def _slug(job: Job) -> str:
    """From the song's title when the model named it (ElevenLabs), else from the prompt."""
    title = (job.result.get("metadata") or {}).get("title") or job.prompt
    text = unicodedata.normalize("NFKD", str(title)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48].rstrip("-") or "encore"


def audio_filename(job: Job) -> str:
    """``<prompt-slug>-<job id>.<ext>`` (variations add ``-v<n>-seed<seed>``): readable, safe, unique."""
    suffix = Path(job.output_path or "").suffix or ".wav"
    if job.batch_size > 1:
        return f"{_slug(job)}-{job.id}-v{job.batch_index + 1}-{seed_label(job).replace(' ', '')}{suffix}"
    return f"{_slug(job)}-{job.id}{suffix}"


def image_filename(job: Job) -> str:
    suffix = Path(job.image_path or "").suffix or ".jpg"
    return f"{_slug(job)}-{job.id}-spectrogram{suffix}"


def waveform_filename(job: Job) -> str:
    return f"{_slug(job)}-{job.id}-waveform.png"


def provider_label(job: Job) -> str:
    """How a delivered file names where it was made: the label its provider declares (its name if unknown)."""
    provider = PROVIDERS.get(job.provider)
    return (provider.label or provider.title) if provider is not None else job.provider


def track_tags(job: Job) -> dict[str, str]:
    """Metadata written into delivered files: the title from the prompt, and that it is AI-generated, by which
    model on which provider (a comment, and fields of their own: ``AI_GENERATED``, ``AI_MODEL``,
    ``AI_PROVIDER``), with its seed and job id."""
    seed = job.seed if job.seed is not None else job.request.get("seed")
    model, provider = model_label(job), provider_label(job)
    if model_id := job.result.get("model_id"):  # the provider's own model (ElevenLabs' music_v1…)
        model += f" ({model_id})"
    details = [f"job {job.id}"] + ([f"seed {seed}"] if seed is not None else [])
    return {
        "title": truncate(job.prompt or "Untitled", 200),
        "artist": "Encore",
        "comment": "; ".join([f"AI-generated with {model} on {provider}, by Encore", *details]),
        "encoded_by": "Encore",
        "encoder": "Encore (AI music generation)",
        "AI_GENERATED": "yes",
        "AI_MODEL": model,
        "AI_PROVIDER": provider,
    }


def loop_tags(job: Job) -> dict[str, str]:
    """A loop of ``job``'s track is tagged like the track, its title saying it is the loop."""
    tags = track_tags(job)
    return {**tags, "title": f"{truncate(tags['title'], 190)} (loop)"}


def loop_filename(base: str, made: Loop) -> str:
    """``<base>_loop_120bpm_4bars.wav`` (``<base>_loop_8s.wav`` without a tempo): what a producer needs to know."""
    return f"{base}_{loop_name(made.bars, made.bpm, made.seconds)}.wav"


def output_files(job: Job) -> list[tuple[str, Path]]:
    """A finished job's files: ``("", its audio)``, or ``(stem name, file)`` for each stem."""
    assert job.output_path is not None
    return [(str(f["name"]), Path(f["path"])) for f in job.result.get("files") or []] or [("", Path(job.output_path))]
