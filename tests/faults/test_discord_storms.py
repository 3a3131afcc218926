"""Many jobs through the real discord.py client while Discord misbehaves: upload errors, gateway drops, dead tokens.

The bot (unmodified discord.py) runs against the Discord simulator and the fake Replicate. While the jobs'
audio is uploaded, a seeded plan answers a share of the uploads (followups through the interaction token,
channel messages once the token is dead, and the Done card's edit carrying its waveform) with 500, 502, 503
or a 429 carrying Discord's real body and headers (``retry_after``, ``global``, ``X-RateLimit-*``, ``Via``),
a few of them global. The gateway is dropped and resumed, asked to reconnect (op 7), down while people run
commands (the interactions are replayed on RESUME), and its session is invalidated once (op 9: a new
IDENTIFY). Half the jobs outlive their 15-minute interaction token (simulated clock) and must arrive as
channel messages replying to their cards. Every job's audio must appear exactly once, decode to the requested
length, every card must end Done, and every request body must pass the simulator's checks.
Single cases: tests/e2e/test_delivery.py.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from bot.records import JobStatus
from tests.e2e.conftest import Encore, accepted, default_guild, job_id_of, status_is
from tests.fakes.audio import audio_info
from tests.fakes.discord import DiscordSimulator, InteractionHandle, SimMessage
from tests.fakes.discord.models import GuildConfig, MemberConfig
from tests.fakes.discord.router import Ctx, Injection
from tests.fakes.replicate import FakeReplicate
from tests.faults.conftest import Reliability

pytestmark = pytest.mark.e2e

SEED = 31_337
FOLLOWUP = "POST /webhooks/{webhook_id}/{webhook_token}"
CHANNEL_SEND = "POST /channels/{channel_id}/messages"
USERS = ("alice", "bob", "carol", "dave", "erin")
# discord.py itself retries 429s (after retry_after) and 500/502 (after 1 + 2 * tries seconds, holding the
# route's bucket); a 503 reaches the bot, which retries the delivery from the stored file with the same nonce.
EDIT_ORIGINAL = "PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original"
CHANNEL_EDIT = "PATCH /channels/{channel_id}/messages/{message_id}"
KINDS = {
    FOLLOWUP: ("500", "502", "503", "503", "429"),
    CHANNEL_SEND: ("503", "503", "429", "429", "429 global"),
    # The Done card uploads its waveform picture.
    EDIT_ORIGINAL: ("503", "429"),
    CHANNEL_EDIT: ("503", "429"),
}
ROUTE_NAMES = {
    FOLLOWUP: "followups",
    CHANNEL_SEND: "channel messages",
    EDIT_ORIGINAL: "Done-card edits through the token",
    CHANNEL_EDIT: "Done-card edits in the channel",
}
RETRY_AFTER_S = 0.2
MAX_FAULTS_PER_JOB = 3  # fewer than the bot's 5 delivery attempts: every job must get through


@dataclass
class UploadStorm:
    """Which uploads fail: by job and by its upload attempt, from a seed (independent of timing)."""

    seed: int
    share: float
    tokens: dict[str, str] = field(default_factory=dict)  # interaction token -> job id
    index: dict[str, int] = field(default_factory=dict)  # job id -> the request's number (ids are random)
    cards: dict[str, str] = field(default_factory=dict)  # card message id -> job id
    _decided: dict[int, tuple[web.Request, str | None]] = field(default_factory=dict)
    _attempts: Counter[str] = field(default_factory=Counter)
    _faults: Counter[str] = field(default_factory=Counter)
    injected: list[tuple[str, str, str]] = field(default_factory=list)  # (job id, route, fault)

    def job_of(self, ctx: Ctx) -> str | None:
        if not ctx.body.files:
            return None  # only uploads (card edits and replies without files are left alone)
        token = ctx.params.get("webhook_token")
        if token is not None:
            return self.tokens.get(token)
        if "message_id" in ctx.params:
            return self.cards.get(ctx.params["message_id"])
        nonce = str(ctx.payload.get("nonce") or "")
        return nonce.removeprefix("encore-") if nonce.startswith("encore-") else None

    def decide(self, route: str, ctx: Ctx) -> str | None:
        key = id(ctx.request)
        if key not in self._decided:  # the request is kept, so its id is not reused
            self._decided[key] = (ctx.request, self._choose(route, ctx))
        return self._decided[key][1]

    def _choose(self, route: str, ctx: Ctx) -> str | None:
        job_id = self.job_of(ctx)
        if job_id is None:
            return None
        attempt = self._attempts[job_id]
        self._attempts[job_id] += 1
        rng = random.Random(f"{self.seed}:{self.index[job_id]}:{attempt}")
        if self._faults[job_id] >= MAX_FAULTS_PER_JOB or rng.random() >= self.share:
            return None
        self._faults[job_id] += 1
        fault = rng.choice(KINDS[route])
        self.injected.append((job_id, route, fault))
        return fault

    def install(self, sim: DiscordSimulator) -> list[Injection]:
        injections = []
        for route, kinds in KINDS.items():
            for kind in sorted(set(kinds)):

                def when(ctx: Ctx, route: str = route, kind: str = kind) -> bool:
                    return self.decide(route, ctx) == kind

                if kind.startswith("429"):
                    is_global = kind == "429 global"
                    inj = sim.inject_rate_limit(
                        route, times=None, retry_after_s=RETRY_AFTER_S, is_global=is_global, when=when
                    )
                else:
                    inj = sim.inject_error(route, status=int(kind), message=f"{kind}: injected", times=None, when=when)
                injections.append(inj)
        return injections


@pytest.fixture
def guilds() -> list[GuildConfig]:
    return [default_guild(members=[MemberConfig(name) for name in USERS])]


@dataclass
class Request:
    user: str
    prompt: str
    duration_s: int
    handle: InteractionHandle | None = None
    card: SimMessage | None = None
    job_id: str = ""
    expired: bool = False


def audio_messages(sim: DiscordSimulator, job_id: str) -> list[SimMessage]:
    return [m for m in sim.messages if any(job_id in a.filename and a.filename.endswith(".wav") for a in m.attachments)]


@pytest.mark.timeout(120)
async def test_discord_storm_delivers_every_track_exactly_once(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, reliability: Reliability
) -> None:
    jobs_n = 20
    requests = [Request(USERS[i % len(USERS)], f"gusty {i:02d} harbour shanty", 1 + i % 3) for i in range(jobs_n)]
    storm = UploadStorm(SEED, share=0.5)
    injections = storm.install(sim)
    encore.configure(jobs={"retry_s": 0.05})
    await encore.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    gateway: Counter[str] = Counter()

    async def ask(request: Request) -> None:
        request.handle = await sim.user(request.user).slash(
            "music generate", prompt=request.prompt, duration=request.duration_s
        )

    async def card_of(request: Request) -> None:
        assert request.handle is not None
        request.card = await request.handle.wait_original(timeout_s=30)
        request.job_id = job_id_of(request.card)
        storm.tokens[request.handle.token] = request.job_id
        storm.index[request.job_id] = requests.index(request)
        storm.cards[str(request.card.id)] = request.job_id

    # First half: cards posted, predictions created; a gateway drop in the middle.
    first, second = requests[: jobs_n // 2], requests[jobs_n // 2 :]
    for i, request in enumerate(first):
        await ask(request)
        if i == len(first) // 2:
            await sim.drop_gateway(resume=True)
            gateway["drop + resume"] += 1
    for request in first:
        await card_of(request)
    pids = [await fake.wait_for_prediction(timeout=30) for _ in first]
    # A cold boot later: the first half's interaction tokens are dead; they must come as channel messages.
    sim.clock.advance(16 * 60)
    for request in first:
        request.expired = True
    # Second half, two of them sent while the gateway is down (replayed to the bot on RESUME).
    for request in second[:-2]:
        await ask(request)
    async with sim.gateway_outage():
        for request in second[-2:]:
            await ask(request)
    gateway["outage with commands, resumed"] += 1
    for request in second:
        await card_of(request)
    pids += [await fake.wait_for_prediction(timeout=30) for _ in second]

    # Replicate finishes them in a shuffled order while the gateway drops and reconnects.
    random.Random(SEED).shuffle(pids)
    finishing = [asyncio.create_task(fake.succeed(pid)) for pid in pids[: jobs_n // 2]]
    await sim.request_reconnect()
    gateway["op 7 reconnect"] += 1
    finishing += [asyncio.create_task(fake.succeed(pid)) for pid in pids[jobs_n // 2 :]]
    await sim.drop_gateway(resume=True)
    gateway["drop + resume"] += 1
    # Not resumable (op 9): a new session, READY and GUILD_CREATEs again (discord.py waits 5 s to re-IDENTIFY).
    await sim.drop_gateway(resume=False, timeout_s=30)
    gateway["invalid session + re-identify"] += 1
    await asyncio.gather(*finishing)

    async with asyncio.timeout(60):
        for request in requests:
            assert request.card is not None
            await sim.wait_for_edit(request.card.id, status_is("Done"), timeout_s=60)
    elapsed = loop.time() - started

    assert encore.bot is not None
    outcomes: Counter[str] = Counter()
    for request in requests:
        assert request.card is not None
        assert request.handle is not None
        [message] = audio_messages(sim, request.job_id)  # exactly once
        [audio] = [a for a in message.attachments if a.filename.endswith(".wav")]
        assert round(audio_info(audio.data).duration_s) == request.duration_s
        assert message.mentions == [sim.user(request.user).id]
        if request.expired:
            assert message.interaction_id is None  # a channel message, not through the dead token
            assert message.reply_to == request.card.id
            assert message.nonce == f"encore-{request.job_id}"
        else:
            assert message.id in request.handle.record.followup_ids
        job = await encore.bot.service.get(request.job_id)
        assert job.status == JobStatus.DELIVERED
        assert job.delivery_message_id == message.id
        outcomes["delivered once (token expired: channel reply)" if request.expired else "delivered once"] += 1
    assert len({m.id for r in requests for m in audio_messages(sim, r.job_id)}) == jobs_n
    assert sim.validation_failures == []
    after = await sim.user("erin").slash("music generate", prompt="after the storm", duration=1)
    await accepted(after, timeout_s=30)  # the bot still answers on its new session

    # What Discord really answered, from the simulator's log (it matches the plan).
    answered = Counter(
        ("429 global" if c.status == 429 and c.response.get("global") else str(c.status), c.route)
        for c in sim.requests
        if c.route in KINDS and not c.ok and c.status in (429, 500, 502, 503)
    )
    assert sum(answered.values()) == len(storm.injected) == sum(i.hits for i in injections)
    assert Counter((fault, route) for _, route, fault in storm.injected) == answered
    dead_tokens = sum(1 for c in sim.requests if c.status == 401 and c.error_code == 50027)
    assert dead_tokens >= len(first)  # each expired job's first call through its token (a card edit) was refused
    by_kind = Counter(fault for _, _, fault in storm.injected)
    by_route = Counter(route for _, route, _ in storm.injected)
    assert by_route[EDIT_ORIGINAL] + by_route[CHANNEL_EDIT] > 0  # Done cards (with their waveform) were hit too
    faults = (
        f"{len(storm.injected)} upload faults ({', '.join(f'{n} {k}' for k, n in sorted(by_kind.items()))}; "
        f"{', '.join(f'{by_route[r]} on {name}' for r, name in ROUTE_NAMES.items())}); "
        f"gateway: {', '.join(f'{n} {k}' for k, n in gateway.items())}; {len(first)} interaction tokens expired "
        f"({dead_tokens} requests refused 401/50027); {elapsed:.1f} s"
    )
    print(f"\n{faults}")
    reliability.record(jobs=jobs_n, faults=faults, outcomes=outcomes)
