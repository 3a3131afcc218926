"""SQL for the fair scheduler's queue: which queued job takes the next turn at a provider, claimed in the
database so that every process sharing it counts the same jobs against the provider's cap.

A queued job waits for its turn (``claimed_at`` NULL) until a process's scheduler claims it: one transaction,
alone per provider in every process (``lock(("queue", provider))``), counts the jobs at the provider (submitted
and running, and queued jobs that have their turn), picks the next job by the fairness rule and claims it with a
conditional UPDATE. The rule (see ``bot.jobs.scheduler``): the person who has been served least at this provider
(``queue_turns``) goes next, among equals whoever has waited longest, and their oldest job first. On PostgreSQL
the pick is ``SELECT ... FOR UPDATE SKIP LOCKED``: a row another transaction is changing (a cancel) is passed
over, not waited for.

A claim belongs to a process (``instances``); a queued job claimed by a process that is gone is taken over.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.storage.backend import Backend
from bot.storage.instances_repo import live_instances

_UNFINISHED = "('queued', 'submitted', 'running')"


def _unfinished(alias: str) -> str:
    """The condition of the scheduler's index (``jobs_provider_unfinished``), spelled as the index spells it: every
    query here says it, so that SQLite (which only sees a partial index's condition when a query repeats it) uses
    that index too."""
    return f"{alias}.status IN {_UNFINISHED}"


# Jobs that count against a provider's cap: at the provider, or being started there (queued with a turn).
_HOLDING_SLOTS = f"""
  FROM jobs AS j
 WHERE j.provider = :provider AND {_unfinished("j")}
   AND (j.status IN ('submitted', 'running') OR (j.status = 'queued' AND j.claimed_at IS NOT NULL))
"""
_IN_FLIGHT = "SELECT COUNT(*)" + _HOLDING_SLOTS

# A person's turns start again from nothing once they have nothing waiting or running at the provider.
_FORGET_IDLE_TURNS = f"""
DELETE FROM queue_turns
 WHERE provider = :provider
   AND NOT EXISTS (SELECT 1 FROM jobs AS j
                    WHERE j.provider = queue_turns.provider AND {_unfinished("j")}
                      AND j.user_id = queue_turns.user_id)
"""  # noqa: S608 - fixed text

_CLAIM = """
UPDATE jobs SET claimed_by = :owner, claimed_at = :now
 WHERE id = :id AND status = 'queued' AND claimed_at IS NULL
"""
_TAKE_OVER = """
UPDATE jobs SET claimed_by = :owner, claimed_at = :now
 WHERE id = :id AND status = 'queued' AND claimed_by = :gone
"""
_SERVED = """
INSERT INTO queue_turns (provider, user_id, served) VALUES (:provider, :user, 1)
ON CONFLICT (provider, user_id) DO UPDATE SET served = queue_turns.served + 1
"""


@dataclass(frozen=True)
class Claimed:
    """A job whose turn a process took; ``gone`` the process that had it before, if it was taken over."""

    job_id: str
    user_id: int
    gone: str | None = None


@dataclass(frozen=True)
class Waiting:
    """A provider's waiting jobs, oldest first, as (job id, person); and each person's turns so far."""

    jobs: list[tuple[str, int]]
    served: dict[int, int]


class QueueRepo:
    def __init__(self, db: Backend) -> None:
        self._db = db

    def _eligible(self, alias: str, *, any_job: bool) -> str:
        """Which waiting jobs a process may claim: its own (a terminal run), or any not kept for another live
        process (the bot)."""
        if not any_job:
            return f"{alias}.claimed_by = :owner"
        live = live_instances(self._db.dialect)
        return f"({alias}.claimed_by IS NULL OR {alias}.claimed_by = :owner OR {alias}.claimed_by NOT IN ({live}))"

    def _abandoned(self, alias: str) -> str:
        """Queued jobs with a turn whose process is gone."""
        live = live_instances(self._db.dialect)
        return (
            f"{_unfinished(alias)} AND {alias}.status = 'queued' AND {alias}.claimed_at IS NOT NULL "
            f"AND {alias}.claimed_by <> :owner AND {alias}.claimed_by NOT IN ({live})"
        )

    async def claim(
        self,
        provider: str,
        *,
        owner: str,
        cap: int,
        limit: int,
        any_job: bool,
        gone_after_s: float,
        now: float,
    ) -> list[Claimed]:
        """Give up to ``limit`` waiting jobs of ``provider`` their turn, for process ``owner``, in one transaction:
        first jobs whose turn a gone process had (they hold a slot already; only with ``any_job``), then the next
        jobs by the fairness rule while fewer than ``cap`` (0: no cap) jobs count against the provider."""
        sql = self._db.dialect
        params = {"provider": provider, "owner": owner, "gone_after_s": gone_after_s, "now": now}
        pick_abandoned = (
            f"SELECT j.id, j.user_id, j.claimed_by FROM jobs AS j WHERE j.provider = :provider "  # noqa: S608
            f"AND {self._abandoned('j')} ORDER BY j.claimed_at, j.id LIMIT 1{sql.skip_locked('j')}"
        )
        pick_next = f"""
            WITH people AS (
                SELECT w.user_id, MIN(w.created_at) AS since FROM jobs AS w
                 WHERE w.provider = :provider AND {_unfinished("w")} AND w.status = 'queued' AND w.claimed_at IS NULL
                   AND {self._eligible("w", any_job=any_job)}
                 GROUP BY w.user_id
            ), turn AS (
                SELECT people.user_id FROM people
                  LEFT JOIN queue_turns AS t ON t.provider = :provider AND t.user_id = people.user_id
                 ORDER BY COALESCE(t.served, 0), people.since, people.user_id
                 LIMIT 1
            )
            SELECT j.id, j.user_id FROM jobs AS j JOIN turn ON turn.user_id = j.user_id
             WHERE j.provider = :provider AND {_unfinished("j")} AND j.status = 'queued' AND j.claimed_at IS NULL
               AND {self._eligible("j", any_job=any_job)}
             ORDER BY j.created_at, j.id
             LIMIT 1{sql.skip_locked("j")}
        """  # noqa: S608 - only fixed fragments are spliced in
        claimed: list[Claimed] = []
        async with self._db.transaction():
            await self._db.lock(("queue", provider))
            await self._db.write(_FORGET_IDLE_TURNS, {"provider": provider})
            while any_job and len(claimed) < limit:
                row = await self._db.read_one(pick_abandoned, params)
                if row is None:
                    break
                job_id, user_id, gone = str(row[0]), int(row[1]), str(row[2])
                await self._db.write(_TAKE_OVER, {**params, "id": job_id, "gone": gone})
                claimed.append(Claimed(job_id, user_id, gone))
            counted = await self._db.read_one(_IN_FLIGHT, {"provider": provider})
            in_flight = int(counted[0]) if counted else 0
            while len(claimed) < limit and (cap == 0 or in_flight < cap):
                row = await self._db.read_one(pick_next, params)
                if row is None:
                    break
                job_id, user_id = str(row[0]), int(row[1])
                if await self._db.write(_CLAIM, {**params, "id": job_id}) != 1:
                    break  # (the row is ours until commit: only a bug gets here)
                await self._db.write(_SERVED, {"provider": provider, "user": user_id})
                in_flight += 1
                claimed.append(Claimed(job_id, user_id))
        return claimed

    async def in_flight(self, provider: str) -> list[str]:
        """The jobs that count against ``provider``'s cap now, in every process (their ids, sorted)."""
        rows = await self._db.read("SELECT j.id" + _HOLDING_SLOTS + "ORDER BY j.id", {"provider": provider})
        return [str(row[0]) for row in rows]

    async def waiting(self, provider: str) -> Waiting:
        """``provider``'s jobs waiting for their turn, oldest first, and the turns each person has had."""
        jobs = await self._db.read(
            f"SELECT j.id, j.user_id FROM jobs AS j WHERE j.provider = ? AND {_unfinished('j')} "  # noqa: S608
            "AND j.status = 'queued' AND j.claimed_at IS NULL ORDER BY j.created_at, j.id",
            (provider,),
        )
        turns = await self._db.read("SELECT user_id, served FROM queue_turns WHERE provider = ?", (provider,))
        return Waiting([(str(r[0]), int(r[1])) for r in jobs], {int(r[0]): int(r[1]) for r in turns})

    async def providers_with_work(
        self, *, owner: str, any_job: bool, gone_after_s: float, provider: str | None = None
    ) -> list[str]:
        """The providers (``provider`` alone, if given) with a job process ``owner`` may claim: one waiting for
        its turn, or (``any_job``) one whose turn a gone process had. One statement, no lock: a round of claims
        costs a locked transaction, worth taking only when this says there is work."""
        found = f"j.claimed_at IS NULL AND {self._eligible('j', any_job=any_job)}"
        if any_job:
            found = f"({found}) OR ({self._abandoned('j')})"
        only = "j.provider = :provider AND " if provider is not None else ""
        rows = await self._db.read(
            f"SELECT DISTINCT j.provider FROM jobs AS j WHERE {only}{_unfinished('j')} "  # noqa: S608
            f"AND j.status = 'queued' AND ({found})",
            {"owner": owner, "gone_after_s": gone_after_s, "provider": provider},
        )
        return sorted(str(row[0]) for row in rows)

    async def release(self, owner: str) -> int:
        """Process ``owner`` stops: the queued jobs whose turn it had (or that waited for it) and that never
        tried the provider wait again for any process's turn. Returns how many.

        A job that tried (``attempts``: counted before each create) may have a prediction at the provider that
        the stop cut off before it was recorded: it keeps its turn, and with it its place under the provider's
        cap, until the next round anywhere takes it over from the gone process; the taker looks for that
        prediction before creating one. Handed back, its slot would go to another job while it runs."""
        return await self._db.write(
            "UPDATE jobs SET claimed_by = NULL, claimed_at = NULL "
            "WHERE claimed_by = ? AND status = 'queued' AND attempts = 0",
            (owner,),
        )
