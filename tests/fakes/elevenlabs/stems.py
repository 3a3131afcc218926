"""Stem separation: a decodable upload becomes a ZIP of one tone per stem, each as long as the upload."""

from __future__ import annotations

import asyncio
import io
import zipfile
from typing import Any

from aiohttp import BodyPartReader, web

from tests.fakes.audio import decode_pcm

from .c2pa import sign_mp3
from .errors import Invalid, _err, _one_of, api_error
from .formats import STEM_FORMATS, AudioFormat, render_tone
from .records import Separation
from .responses import ResponseWriter
from .validation import query_errors, validate_format

STEMS = {
    "six_stems_v1": ("vocals", "drums", "bass", "guitar", "piano", "other"),
    "two_stems_v1": ("vocals", "accompaniment"),  # guess: reported, undocumented
}
_STEM_PITCH = {
    "vocals": 440.0,
    "drums": 110.0,
    "bass": 55.0,
    "guitar": 330.0,
    "piano": 262.0,
    "other": 660.0,
    "accompaniment": 220.0,
}


class StemRoutes(ResponseWriter):
    """Handler of ``/v1/music/stem-separation``."""

    async def _h_stems(self, request: web.Request) -> web.StreamResponse:
        errors: list[dict[str, Any]] = query_errors(request.query)
        try:
            fmt = AudioFormat.parse(validate_format(request.query, STEM_FORMATS, "mp3_44100_128"))
        except Invalid as exc:
            errors += exc.errors
            fmt = AudioFormat.parse("mp3_44100_128")
        if "stem_variation_id" in request.query:
            msg = "fake: stem_variation_id is a form field, not a query parameter"
            errors.append(_err(["query", "stem_variation_id"], msg, "extra_forbidden"))
        fields: dict[str, tuple[bytes, str | None]] = {}
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    raise Invalid([_err(["body"], "fake: nested multipart is not supported")])
                fields[part.name or ""] = (bytes(await part.read()), part.filename)
        for name in fields:
            if name not in ("file", "stem_variation_id", "sign_with_c2pa"):
                errors.append(_err(["body", name], "Extra inputs are not permitted", "extra_forbidden"))
        file = fields.get("file")
        if file is None:
            errors.append(_err(["body", "file"], "Field required", "missing"))
        elif file[1] is None:
            errors.append(_err(["body", "file"], "Expected UploadFile, received: <class 'str'>"))
        variation = fields.get("stem_variation_id", (b"six_stems_v1", None))[0].decode(errors="replace")
        if variation not in STEMS:
            errors.append(_err(["body", "stem_variation_id"], _one_of(tuple(STEMS)), "enum"))
        c2pa = fields.get("sign_with_c2pa", (b"false", None))[0].decode(errors="replace").lower()
        if c2pa not in ("true", "false", "1", "0"):
            errors.append(_err(["body", "sign_with_c2pa"], "Input should be a valid boolean", "bool_parsing"))
        elif c2pa in ("true", "1") and fmt.codec != "mp3":
            errors.append(_err(["body", "sign_with_c2pa"], "fake: C2PA signing needs an mp3 output_format"))
        if errors:
            raise Invalid(errors)
        assert file is not None
        channels = fmt.channels(self.pcm_channels)
        try:
            pcm = await asyncio.to_thread(decode_pcm, file[0], sample_rate=fmt.sample_rate, channels=channels)
        except ValueError:
            raise api_error("invalid_audio", param="file") from None
        sep = Separation(
            stem_variation_id=variation,
            output_format=fmt.name,
            file=file[0],
            filename=file[1],
            frames=pcm.frames,
            sign_with_c2pa=c2pa in ("true", "1"),
        )
        self._log(self.separations, self._new_separations, sep)
        try:
            for stem in STEMS[variation]:
                data = await asyncio.to_thread(render_tone, fmt.name, pcm.frames, channels, _STEM_PITCH[stem])
                if sep.sign_with_c2pa:
                    data = sign_mp3(data, generator="stem-separation")
                sep.stems[f"{stem}.{fmt.extension}"] = data
        except asyncio.CancelledError:
            self._aborted(sep)
            raise
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
            for name, data in sep.stems.items():
                archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)
        sep.archive = buf.getvalue()
        headers = {"Content-Type": "application/zip", "Content-Disposition": "attachment; filename=stems.zip"}
        return await self._send(request, sep, self._pieces(sep.archive), headers)
