"""The music routes: compose, stream, detailed, detailed stream (one handler) and plan."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from aiohttp import web

from .c2pa import sign_mp3
from .errors import Invalid, _err, _pydantic_errors, api_error
from .formats import AUTO_FORMAT, GENERATION_FORMATS, AudioFormat, render_tone
from .plans import derive_plan, fit_plan, plan_length_ms, song_metadata, word_timestamps
from .records import Generation, PlanRecord
from .responses import ResponseWriter
from .schemas import PlanBody
from .validation import ENDPOINTS, _plan_errors, _plan_total_error, query_errors, validate_format, validate_generation


class MusicRoutes(ResponseWriter):
    """Handlers of ``/v1/music``, ``/stream``, ``/detailed``, ``/detailed/stream`` and ``/plan``."""

    # ------------------------------------------------------------ generation routes

    async def _json(self, request: web.Request) -> Any:
        if request.content_type != "application/json":
            raise Invalid([_err(["body"], "fake: send a JSON body (Content-Type: application/json)", "json_invalid")])
        try:
            return json.loads(await request.read())
        except ValueError:
            raise Invalid([_err(["body"], "JSON decode error", "json_invalid")]) from None

    def _check_song(self, song_id: str) -> None:
        song = self.songs.get(song_id)
        if song is None or not song.store_for_inpainting:
            raise api_error("song_not_found", f"fake: no stored song {song_id!r}", param="song_id")

    async def _h_generate(self, request: web.Request) -> web.StreamResponse:
        endpoint = ENDPOINTS[request.path.removeprefix(self.prefix)]
        body = await self._json(request)
        requested = request.query.get("output_format", "auto")
        errors: list[dict[str, Any]] = query_errors(request.query)
        try:
            validate_format(request.query, GENERATION_FORMATS, "auto")
        except Invalid as exc:
            errors += exc.errors
        try:
            parsed = validate_generation(body, endpoint, allow_seed_with_prompt=self.allow_seed_with_prompt)
        except Invalid as exc:
            raise Invalid(errors + exc.errors) from None
        if errors:
            raise Invalid(errors)
        model_id = parsed.model_id or "music_v1"
        fmt = AudioFormat.parse(AUTO_FORMAT[model_id] if requested == "auto" else requested)
        if parsed.sign_with_c2pa and fmt.codec != "mp3":
            errors.append(_err(["body", "sign_with_c2pa"], "fake: C2PA signing needs an mp3 output_format"))
        if errors:
            raise Invalid(errors)
        sent_plan = parsed.music_prompt if parsed.music_prompt is not None else parsed.composition_plan
        if sent_plan is not None:
            for part in sent_plan.get("sections") or sent_plan.get("chunks") or []:
                for source in (part.get("source_from") or part, part.get("conditioning_ref") or {}):
                    if (ref := source.get("song_id")) is not None:
                        self._check_song(ref)
            plan = sent_plan
        else:
            assert parsed.prompt is not None
            length = parsed.music_length_ms or self.default_length_ms
            plan = derive_plan(parsed.prompt, length, model_id, instrumental=bool(parsed.force_instrumental))
        gen = Generation(
            song_id=secrets.token_hex(10),
            endpoint=endpoint,
            body=body,
            model_id=model_id,
            prompt=parsed.prompt,
            composition_plan=sent_plan,
            plan=plan,
            seed=parsed.seed,
            music_length_ms=parsed.music_length_ms,
            length_ms=plan_length_ms(plan),
            output_format=fmt.name,
            requested_format=requested,
            force_instrumental=bool(parsed.force_instrumental),
            with_timestamps=bool(parsed.with_timestamps),
            store_for_inpainting=bool(parsed.store_for_inpainting),
            finetune_id=parsed.finetune_id,
            sign_with_c2pa=bool(parsed.sign_with_c2pa),
            metadata=song_metadata(parsed.prompt, plan),
            words_timestamps=self._words(plan) if parsed.with_timestamps else None,
        )
        self.songs[gen.song_id] = gen
        self._log(self.generations, self._new_generations, gen)
        headers = {self.song_id_header: gen.song_id}
        try:
            channels = fmt.channels(self.pcm_channels)
            audio = await asyncio.to_thread(render_tone, fmt.name, fmt.frames(gen.length_ms), channels)
        except asyncio.CancelledError:
            self._aborted(gen)
            raise
        if gen.sign_with_c2pa:  # mp3 only: anything else was refused above
            audio = sign_mp3(audio, generator=model_id)
        if endpoint == "compose":
            gen.audio = audio
            return await self._send(request, gen, [audio], {**headers, "Content-Type": fmt.content_type})
        if endpoint == "stream":
            gen.audio = audio
            headers["Content-Type"] = fmt.content_type
            return await self._send(request, gen, self._pieces(audio), headers, chunked=True)
        if endpoint == "detailed":
            return await self._send_detailed(request, gen, audio, fmt, headers)
        gen.audio = audio
        headers["Content-Type"] = "text/event-stream"
        return await self._send(request, gen, self._events(gen, audio), headers, chunked=True)

    def _words(self, plan: dict[str, Any]) -> list[dict[str, Any]]:
        words = word_timestamps(plan)
        return words if self.tamper_words is None else self.tamper_words(words)

    # ------------------------------------------------------------ plan

    async def _h_plan(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if not isinstance(body, dict):
            msg = "Input should be a valid dictionary or object to extract fields from"
            raise Invalid([_err(["body"], msg, "model_attributes_type")])
        errors = query_errors(request.query) + _pydantic_errors(PlanBody, body, ["body"])
        if errors:
            raise Invalid(errors)
        parsed = PlanBody.model_validate(body, strict=True)
        model_id = parsed.model_id or "music_v1"
        source = parsed.source_composition_plan
        loc: list[str | int] = ["body", "source_composition_plan"]
        if source is not None:
            if errors := _plan_errors(source, model_id, loc) or _plan_total_error(source, loc):
                raise Invalid(errors)
            plan = source if parsed.music_length_ms is None else fit_plan(source, parsed.music_length_ms, loc)
        else:
            plan = derive_plan(parsed.prompt, parsed.music_length_ms or self.default_length_ms, model_id)
        self.plans.append(PlanRecord(parsed.prompt, model_id, parsed.music_length_ms, source, plan))
        self._notify()
        return web.json_response(plan)
