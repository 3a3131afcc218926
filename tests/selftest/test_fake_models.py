"""Self-tests for the fake models (tests/fakes/models.py) through the Replicate fake, and the PyAV helpers."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.audio import (
    audio_info,
    decode_pcm,
    encode_pcm,
    image_info,
    make_jpeg,
    make_mp3,
    make_wav,
    tone_pcm,
    wav_info,
)
from tests.fakes.models import DEMUCS, NONEXISTENT_MODELS, FakeModel, InputFile, decode_data_url
from tests.fakes.replicate import MODELS, MUSICGEN, FakeReplicate
from tests.selftest.conftest import call, serve

MUSICGEN_V = MUSICGEN.versions[0]
STABLE_V = "9aff84a639f96d0f7e6081cdea002d15133d0043727f849c40abdd166b7c75a8"
RIFF_V = "8cf61ea6c56afd61d8f5b9ffd14d7c216c0a93844ce2d82ac1c9ecc9c7f24e05"


def data_url(data: bytes, mime: str = "audio/wav") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


class ClipServer:
    """A tiny external host for input files: ``/<name>`` serves ``files[name]``, others 404."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: list[str] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits.append(name)
        if name not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[name], content_type="audio/wav")


@pytest.fixture
async def clips() -> AsyncIterator[ClipServer]:
    server = ClipServer()
    async with serve(web.get("/{name}", server.handle)) as url:
        server.url = url
        yield server


async def run(http: aiohttp.ClientSession, fake: FakeReplicate, version: str, inp: dict[str, Any]) -> dict[str, Any]:
    """Create a prediction, run it to the end and return its final JSON."""
    status, pred, _ = await call(http, "POST", f"{fake.base_url}/predictions", json={"version": version, "input": inp})
    assert status == 201, pred
    await fake.succeed(pred["id"])
    status, done, _ = await call(http, "GET", pred["urls"]["get"])
    assert status == 200
    return done


async def download(http: aiohttp.ClientSession, url: str, content_type: str) -> bytes:
    status, data, resp = await call(http, "GET", url)
    assert status == 200
    assert resp.content_type == content_type
    return data


def musicgen(**inp: Any) -> dict[str, Any]:
    return {"prompt": "lofi", "duration": 4, **inp}


# ---------------------------------------------------------------- audio and image helpers


def test_make_mp3_decodes_to_its_length() -> None:
    for duration, rate, channels in [(3.0, 32000, 2), (1.5, 44100, 1)]:
        data = make_mp3(duration, sample_rate=rate, channels=channels)
        assert data[:3] == b"ID3" or data[:2] == b"\xff\xfb"
        info = audio_info(data)
        assert (info.duration_s, info.sample_rate, info.channels, info.codec) == (duration, rate, channels, "mp3float")


@pytest.mark.parametrize(
    ("container", "codec", "bit_rate", "decoder"),
    [("wav", "pcm_s16le", None, "pcm_s16le"), ("flac", "flac", None, "flac"), ("ogg", "libopus", 96000, "opus")],
)
def test_audio_info_decodes_any_format(container: str, codec: str, bit_rate: int | None, decoder: str) -> None:
    pcm = tone_pcm(48000 * 2, sample_rate=48000, channels=2)
    data = encode_pcm(pcm, sample_rate=48000, channels=2, container=container, codec=codec, bit_rate=bit_rate)
    info = audio_info(data)
    assert (info.duration_s, info.sample_rate, info.channels, info.codec, info.frames) == (
        2.0,
        48000,
        2,
        decoder,
        96000,
    )


def test_audio_info_counts_samples_not_headers() -> None:
    wav = make_wav(2.0, channels=1)
    truncated = wav[: 44 + 32000 * 2]  # the header still says 2 s
    with pytest.raises(ValueError, match="truncated"):
        wav_info(truncated)
    assert audio_info(truncated).duration_s == 1.0
    for bad in (b"", b"not audio at all" * 20, make_jpeg(16, 16)):
        with pytest.raises(ValueError, match=r"not a media file|no audio stream"):
            audio_info(bad)


def test_decode_pcm_is_exact_and_converts() -> None:
    wav = make_wav(1.0, sample_rate=32000, channels=2, freq_hz=1000)
    pcm = decode_pcm(wav)
    assert (pcm.sample_rate, pcm.channels, pcm.frames) == (32000, 2, 32000)
    assert pcm.data == wav[44:]
    assert pcm.slice_s(0.5) == wav[44 + 16000 * 4 :]
    converted = decode_pcm(make_wav(1.0, sample_rate=8000, channels=1), sample_rate=32000, channels=2)
    assert (converted.frames, converted.channels) == (32000, 2)
    with pytest.raises(ValueError, match="not a media file"):
        decode_pcm(b"junk" * 50)


def test_make_jpeg_is_a_real_jpeg() -> None:
    data = make_jpeg(512, 512)
    assert data[:3] == b"\xff\xd8\xff"
    assert data[-2:] == b"\xff\xd9"
    assert image_info(data) == image_info(make_jpeg(512, 512))
    assert (image_info(data).width, image_info(data).height, image_info(data).codec) == (512, 512, "mjpeg")
    assert (image_info(make_jpeg(33, 17)).width, image_info(make_jpeg(33, 17)).height) == (33, 17)
    with pytest.raises(ValueError, match=r"not a media file|no image"):
        image_info(make_wav(0.1))


def test_data_url_decoding() -> None:
    got = decode_data_url("data:audio/wav;base64," + base64.b64encode(b"RIFF").decode())
    assert (got.data, got.content_type, got.name) == (b"RIFF", "audio/wav", "file")
    assert decode_data_url("data:,a%20b").data == b"a b"
    assert InputFile("https://x.example/a/clip.wav?sig=1", b"", "audio/wav").name == "clip.wav"


# ---------------------------------------------------------------- registry


def test_registry() -> None:
    assert set(MODELS) == {
        "meta/musicgen",
        "stackadoc/stable-audio-open-1.0",
        "riffusion/riffusion",
        "ryan5453/demucs",
    }
    assert not NONEXISTENT_MODELS & set(MODELS)
    assert MUSICGEN.file_inputs == ("input_audio",)
    assert DEMUCS.file_inputs == ("audio",)
    assert re.fullmatch(r"[0-9a-f]{64}", DEMUCS.versions[0])
    assert all(isinstance(m, FakeModel) for m in MODELS.values())


@pytest.mark.parametrize("ref", sorted(NONEXISTENT_MODELS))
async def test_nonexistent_models(fake: FakeReplicate, http: aiohttp.ClientSession, ref: str) -> None:
    status, body, resp = await call(http, "GET", f"{fake.base_url}/models/{ref}")
    assert (status, resp.content_type) == (404, "application/problem+json")
    assert body["status"] == 404
    status, body, _ = await call(
        http, "POST", f"{fake.base_url}/predictions", json={"version": f"{ref}:{STABLE_V}", "input": {"prompt": "x"}}
    )
    assert status == 422
    assert body["title"] == "Invalid version or not permitted"
    status, _, _ = await call(http, "POST", f"{fake.base_url}/models/{ref}/predictions", json={"input": {}})
    assert status == 404


# ---------------------------------------------------------------- musicgen: mp3 and input audio


async def test_musicgen_mp3_output(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    done = await run(http, fake, MUSICGEN_V, musicgen(duration=3, output_format="mp3"))
    assert done["status"] == "succeeded", done["error"]
    assert done["output"].endswith("/out.mp3")
    info = audio_info(await download(http, done["output"], "audio/mpeg"))
    assert (info.duration_s, info.sample_rate, info.channels, info.codec) == (3.0, 32000, 2, "mp3float")


async def test_melody_from_data_url(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    clip = data_url(make_wav(2.0, sample_rate=44100, channels=1))
    done = await run(http, fake, MUSICGEN_V, musicgen(model_version="melody-large", input_audio=clip, duration=5))
    assert done["status"] == "succeeded", done["error"]
    assert done["input"]["input_audio"] == clip  # the echoed input is what the client sent
    info = wav_info(await download(http, done["output"], "audio/wav"))
    assert (info.duration_s, info.channels) == (5.0, 1)  # melody mode: `duration` long, input not copied
    assert fake.input_fetches == [clip]


async def test_continuation_from_files_api(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    clip = make_wav(2.0, sample_rate=32000, channels=2, freq_hz=1000)
    form = aiohttp.FormData()
    form.add_field("content", clip, filename="clip.wav", content_type="audio/wav")
    status, file, _ = await call(http, "POST", f"{fake.base_url}/files", data=form)
    assert status == 201
    done = await run(http, fake, MUSICGEN_V, musicgen(input_audio=file["urls"]["get"], continuation=True, duration=5))
    assert done["status"] == "succeeded", done["error"]
    out = decode_pcm(await download(http, done["output"], "audio/wav"))
    assert (out.duration_s, out.sample_rate, out.channels) == (5.0, 32000, 2)
    assert out.data.startswith(clip[44:])  # the whole 2 s clip, bit-exact, then new material
    assert out.slice_s(2.0, 3.0) == tone_pcm(32000)
    assert fake.input_fetches == [file["urls"]["get"]]


async def test_continuation_from_external_url(
    fake: FakeReplicate, http: aiohttp.ClientSession, clips: ClipServer
) -> None:
    clip = make_wav(3.0, sample_rate=32000, channels=1, freq_hz=1000)
    clips.files["clip.wav"] = clip
    inp = musicgen(
        model_version="melody-large",
        input_audio=f"{clips.url}/clip.wav",
        continuation=True,
        continuation_start=1,
        continuation_end=2,
        duration=4,
        output_format="mp3",
    )
    done = await run(http, fake, MUSICGEN_V, inp)
    assert done["status"] == "succeeded", done["error"]
    assert clips.hits == ["clip.wav"]
    info = audio_info(await download(http, done["output"], "audio/mpeg"))
    assert (info.duration_s, info.channels) == (4.0, 1)
    # Same request as WAV to check the prefix exactly: the [1 s, 2 s) segment comes first.
    done = await run(http, fake, MUSICGEN_V, {**inp, "output_format": "wav"})
    out = decode_pcm(await download(http, done["output"], "audio/wav"))
    assert out.duration_s == 4.0
    assert out.data.startswith(clip[44 + 32000 * 2 : 44 + 2 * 32000 * 2])


@pytest.mark.parametrize(
    ("clip_s", "inp", "error", "exc_type"),
    [
        (3.0, {"continuation": True, "duration": 3}, "fake: the continuation segment (3 s) must be shorter", "Assert"),
        (4.0, {"continuation": True, "duration": 3}, "Prompt is longer than audio to generate", "AssertionError"),
        (31.0, {"continuation": True, "duration": 40}, "Prompt is longer than audio to generate", "AssertionError"),
        (
            4.0,
            {"continuation": True, "continuation_start": 3, "continuation_end": 1},
            "`continuation_start` must be less than or equal to `continuation_end`",
            "ValueError",
        ),
        (  # past the end of the clip: the end defaults to the clip's length, so start > end
            2.0,
            {"continuation": True, "continuation_start": 5},
            "`continuation_start` must be less than or equal to `continuation_end`",
            "ValueError",
        ),
        (2.0, {"continuation": True, "continuation_start": 2}, "fake: the input_audio segment [2, 2] s is empty", ""),
    ],
)
async def test_continuation_segment_rules(
    fake: FakeReplicate, http: aiohttp.ClientSession, clip_s: float, inp: dict[str, Any], error: str, exc_type: str
) -> None:
    clip = data_url(make_wav(clip_s, sample_rate=8000, channels=1))
    done = await run(http, fake, MUSICGEN_V, musicgen(input_audio=clip, **inp))
    assert done["status"] == "failed"
    assert done["error"].startswith(error)
    assert done["output"] is None
    assert "Using seed " in done["logs"]
    assert done["logs"].rstrip().endswith(done["error"])
    assert exc_type in done["logs"]


async def test_continuation_within_30_s_of_a_long_request(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    clip = data_url(make_wav(30.0, sample_rate=8000, channels=1))
    done = await run(http, fake, MUSICGEN_V, musicgen(input_audio=clip, continuation=True, duration=35))
    assert done["status"] == "succeeded", done["error"]
    assert wav_info(await download(http, done["output"], "audio/wav")).duration_s == 35.0


async def test_input_audio_fetch_failures(fake: FakeReplicate, http: aiohttp.ClientSession, clips: ClipServer) -> None:
    cases = [
        (f"{clips.url}/missing.wav", "fake: fetching "),
        (f"{fake.base_url}/files/nosuchfile", "fake: fetching "),
        ("http://127.0.0.1:1/clip.wav", "fake: fetching "),
        (data_url(b"not audio" * 10), 'Failed to open the input "/tmp/file"'),
    ]
    for url, error in cases:
        done = await run(http, fake, MUSICGEN_V, musicgen(input_audio=url, continuation=True))
        assert done["status"] == "failed", url
        assert done["error"].startswith(error), done["error"]
    assert clips.hits == ["missing.wav"]
    assert fake.input_fetches == [url for url, _ in cases]


async def test_cancel_while_fetching_drops_the_result(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    gate: list[str] = []

    async def slow(request: web.Request) -> web.Response:
        gate.append("asked")
        status, _, _ = await call(http, "POST", f"{fake.base_url}/predictions/{pid}/cancel")
        assert status == 200
        return web.Response(body=make_wav(1.0), content_type="audio/wav")

    app = web.Application()
    app.router.add_get("/clip.wav", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/clip.wav"
        body = {"version": MUSICGEN_V, "input": musicgen(input_audio=url, continuation=True)}
        _, pred, _ = await call(http, "POST", f"{fake.base_url}/predictions", json=body)
        pid = pred["id"]
        await fake.succeed(pid)  # the clip host cancels the prediction while it is being fetched
    finally:
        await runner.cleanup()
    assert gate == ["asked"]
    assert fake.prediction(pid).status == "canceled"
    assert fake.prediction(pid).output is None


# ---------------------------------------------------------------- stable audio open


async def test_stable_audio_output(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    version = f"stackadoc/stable-audio-open-1.0:{STABLE_V}"
    done = await run(http, fake, version, {"prompt": "rain on a tin roof", "seconds_total": 3, "seed": 1234})
    assert done["status"] == "succeeded", done["error"]
    assert done["model"] == "stackadoc/stable-audio-open-1.0"
    assert "1234" in done["logs"].split()
    info = audio_info(await download(http, done["output"], "audio/wav"))
    assert (info.duration_s, info.sample_rate, info.channels) == (3.0, 44100, 2)
    done = await run(http, fake, STABLE_V, {"prompt": "x"})  # defaults: 8 s, random seed logged
    assert audio_info(await download(http, done["output"], "audio/wav")).duration_s == 8.0
    assert done["logs"].strip().isdigit()


@pytest.mark.parametrize(
    ("inp", "field", "kind"),
    [
        ({"prompt": "x", "seconds_total": 48}, "input.seconds_total", "number_lte"),
        ({"prompt": "x", "seconds_total": 0}, "input.seconds_total", "number_gte"),
        ({"prompt": "x", "seconds_start": -1}, "input.seconds_start", "number_gte"),
        ({"prompt": "x", "sampler_type": "euler"}, "input.sampler_type", "enum"),
        ({"prompt": "x", "cfg_scale": "high"}, "input.cfg_scale", "invalid_type"),
        ({"seconds_total": 5}, "input", "required"),
    ],
)
async def test_stable_audio_validation(
    fake: FakeReplicate, http: aiohttp.ClientSession, inp: dict[str, Any], field: str, kind: str
) -> None:
    body = {"version": STABLE_V, "input": inp}
    status, data, _ = await call(http, "POST", f"{fake.base_url}/predictions", json=body)
    assert status == 422
    assert [(f["field"], f["type"]) for f in data["invalid_fields"]] == [(field, kind)]
    assert fake.predictions == {}


async def test_stable_audio_model_endpoint(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    status, model, _ = await call(http, "GET", f"{fake.base_url}/models/stackadoc/stable-audio-open-1.0")
    assert status == 200
    assert model["is_official"] is False
    assert model["latest_version"]["id"] == STABLE_V
    props = model["latest_version"]["openapi_schema"]["components"]["schemas"]["Input"]["properties"]
    assert props["sampler_type"]["default"] == "dpmpp-3m-sde"
    assert (props["seconds_total"]["minimum"], props["seconds_total"]["maximum"]) == (1, 47)
    url = f"{fake.base_url}/models/stackadoc/stable-audio-open-1.0/predictions"
    status, data, _ = await call(http, "POST", url, json={"input": {"prompt": "x"}})
    assert status == 422  # not official: needs a version
    assert data["title"] == "Invalid version or not permitted"


# ---------------------------------------------------------------- riffusion


async def test_riffusion_object_output(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    done = await run(http, fake, f"riffusion/riffusion:{RIFF_V}", {"prompt_a": "jazz piano"})
    assert done["status"] == "succeeded", done["error"]
    assert set(done["output"]) == {"audio", "spectrogram"}
    assert done["output"]["audio"].endswith("/gen_sound.wav")
    info = audio_info(await download(http, done["output"]["audio"], "audio/wav"))
    assert (info.duration_s, info.sample_rate, info.channels) == (5.0, 44100, 1)
    jpeg = await download(http, done["output"]["spectrogram"], "image/jpeg")
    assert jpeg[:2] == b"\xff\xd8"
    assert (image_info(jpeg).width, image_info(jpeg).height) == (512, 512)
    assert "alpha=0 " in done["logs"]  # no prompt_b: alpha forced to 0 (the default is 0.5)


@pytest.mark.parametrize(
    ("inp", "alpha"),
    [({"prompt_b": "", "alpha": 0.8}, "0"), ({"prompt_b": "strings", "alpha": 0.3}, "0.3"), ({"prompt_b": "b"}, "0.5")],
)
async def test_riffusion_alpha(
    fake: FakeReplicate, http: aiohttp.ClientSession, inp: dict[str, Any], alpha: str
) -> None:
    done = await run(http, fake, RIFF_V, inp)
    assert done["status"] == "succeeded", done["error"]
    assert f"alpha={alpha} " in done["logs"]


@pytest.mark.parametrize(
    ("inp", "field", "kind"),
    [
        ({"seed_image_id": "nope"}, "input.seed_image_id", "enum"),
        ({"denoising": 1.5}, "input.denoising", "number_lte"),
        ({"num_inference_steps": 0}, "input.num_inference_steps", "number_gte"),
        ({"prompt_b": None}, "input.prompt_b", "invalid_type"),
    ],
)
async def test_riffusion_validation(
    fake: FakeReplicate, http: aiohttp.ClientSession, inp: dict[str, Any], field: str, kind: str
) -> None:
    status, data, _ = await call(http, "POST", f"{fake.base_url}/predictions", json={"version": RIFF_V, "input": inp})
    assert status == 422
    assert [(f["field"], f["type"]) for f in data["invalid_fields"]] == [(field, kind)]
    if kind == "enum":
        assert "vibes" in data["invalid_fields"][0]["description"]


# ---------------------------------------------------------------- ryan5453/demucs

DEMUCS_V = DEMUCS.versions[0]


@pytest.mark.parametrize(
    ("inp", "stems", "ext", "content_type"),
    [
        ({}, ["drums", "bass", "other", "vocals"], "wav", "audio/wav"),
        (
            {"model": "htdemucs_6s", "format": "mp3"},
            ["drums", "bass", "other", "vocals", "guitar", "piano"],
            "mp3",
            "audio/mpeg",
        ),
        ({"isolate_stem": "vocals"}, ["vocals", "no_vocals"], "wav", "audio/wav"),
        ({"isolate_stem": "guitar", "format": "mp3"}, ["guitar", "no_guitar"], "mp3", "audio/mpeg"),  # auto: 6 stems
        (
            {"model": "htdemucs_ft", "format": "flac", "shifts": 2, "split": False, "split_size": None},
            ["drums", "bass", "other", "vocals"],
            "flac",
            "audio/flac",
        ),
    ],
)
async def test_demucs_stems(
    fake: FakeReplicate,
    http: aiohttp.ClientSession,
    inp: dict[str, Any],
    stems: list[str],
    ext: str,
    content_type: str,
) -> None:
    clip = make_mp3(2.5, sample_rate=44100, channels=2)
    done = await run(http, fake, f"ryan5453/demucs:{DEMUCS_V}", {"audio": data_url(clip, "audio/mpeg"), **inp})
    assert done["status"] == "succeeded", done["error"]
    assert list(done["output"]) == stems
    for stem, url in done["output"].items():
        assert url.endswith(f"/{stem}.{ext}")
        info = audio_info(await download(http, url, content_type))
        assert (info.duration_s, info.sample_rate, info.channels) == (2.5, 44100, 2)


async def test_demucs_resamples_to_the_input_length(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    clip = make_wav(2.0, sample_rate=32000, channels=1)
    done = await run(http, fake, DEMUCS_V, {"audio": data_url(clip), "isolate_stem": "drums"})
    assert done["status"] == "succeeded", done["error"]
    info = wav_info(await download(http, done["output"]["no_drums"], "audio/wav"))
    assert (info.frames, info.sample_rate, info.channels) == (decode_pcm(clip, sample_rate=44100).frames, 44100, 2)


@pytest.mark.parametrize(
    ("inp", "error"),
    [
        ({"model": "htdemucs", "isolate_stem": "piano"}, "fake: model htdemucs has no piano stem"),
        ({"format": "aiff"}, "fake: unsupported format 'aiff'"),
        ({"audio": data_url(b"not audio" * 10)}, 'Failed to open the input "/tmp/file"'),
    ],
)
async def test_demucs_failures(
    fake: FakeReplicate, http: aiohttp.ClientSession, inp: dict[str, Any], error: str
) -> None:
    done = await run(http, fake, DEMUCS_V, {"audio": data_url(make_wav(1.0)), **inp})
    assert done["status"] == "failed"
    assert done["error"].startswith(error), done["error"]
    assert done["output"] is None


@pytest.mark.parametrize(
    ("inp", "field", "kind"),
    [
        ({}, "input", "required"),
        ({"model": "mdx_q"}, "input.model", "enum"),
        ({"isolate_stem": "keys"}, "input.isolate_stem", "enum"),
        ({"shifts": 0}, "input.shifts", "number_gte"),
        ({"shifts": 21}, "input.shifts", "number_lte"),
        ({"split_size": 0}, "input.split_size", "number_gte"),
        ({"split_overlap": 1.5}, "input.split_overlap", "number_lte"),
        ({"clip_mode": "soft"}, "input.clip_mode", "enum"),
        ({"split": "yes"}, "input.split", "invalid_type"),
        ({"audio": "not a url"}, "input.audio", "format"),
    ],
)
async def test_demucs_validation(
    fake: FakeReplicate, http: aiohttp.ClientSession, inp: dict[str, Any], field: str, kind: str
) -> None:
    full = {"audio": "https://example.com/a.wav", **inp} if "audio" not in inp and inp else inp
    status, data, _ = await call(
        http, "POST", f"{fake.base_url}/predictions", json={"version": DEMUCS_V, "input": full}
    )
    assert status == 422
    assert [(f["field"], f["type"]) for f in data["invalid_fields"]] == [(field, kind)]
    assert fake.predictions == {}


async def test_demucs_model_endpoint(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    status, model, _ = await call(http, "GET", f"{fake.base_url}/models/ryan5453/demucs")
    assert status == 200
    assert model["latest_version"]["id"] == DEMUCS_V
    props = model["latest_version"]["openapi_schema"]["components"]["schemas"]["Input"]["properties"]
    assert (props["model"]["default"], props["format"]["default"], props["isolate_stem"]["default"]) == (
        "auto",
        "wav",
        "none",
    )
    assert props["clip_mode"]["enum"] == ["rescale", "none", "clamp", "tanh"]
