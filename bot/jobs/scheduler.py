"""Fair scheduling: queued jobs go to each provider round-robin between people, within a cap per provider.

A plain FIFO lets one person's batch hold everyone else up. Here each provider has a queue per person;
when a slot is free the scheduler takes the next person in turn and submits their oldest job. Slots are
jobs at the provider (submitted, running, being fetched). The database is the truth: at startup the
queues are rebuilt from the queued jobs, oldest first.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

MOVED_NOTICES = 10  # waiting jobs whose cards are told they moved up (the rest learn when they get closer)


@dataclass
class _ProviderQueue:
    capacity: int  # 0: unlimited
    # person -> their queued job ids, oldest first, in order of arrival.
    people: OrderedDict[int, deque[str]]
    in_flight: set[str]
    # jobs started per person while they have had jobs waiting or running: the least served goes next.
    served: dict[int, int]


def _next_person(people: OrderedDict[int, deque[str]], served: dict[int, int]) -> int:
    """Whoever has been served least goes next; among equals, whoever has waited longest."""
    return min(people, key=lambda person: served.get(person, 0))


class Scheduler:
    def __init__(
        self,
        capacities: dict[str, int],
        start: Callable[[str], None],
        on_moved: Callable[[list[str]], None] = lambda _: None,
    ) -> None:
        """``start(job_id)`` submits a job (the caller owns the task); ``on_moved`` hears which waiting
        jobs moved up the queue."""
        self._capacities = capacities
        self._start = start
        self._on_moved = on_moved
        self._queues: dict[str, _ProviderQueue] = {}
        self._owner: dict[str, tuple[str, int]] = {}  # job id -> (provider, person)

    def _queue(self, provider: str) -> _ProviderQueue:
        if provider not in self._queues:
            self._queues[provider] = _ProviderQueue(self._capacities.get(provider, 0), OrderedDict(), set(), {})
        return self._queues[provider]

    def set_capacities(self, capacities: dict[str, int]) -> None:
        """New caps (``/encore reload``): a raised cap starts waiting jobs now; under a lowered one the jobs at
        the provider finish, and no new one starts until they are under it."""
        self._capacities = dict(capacities)
        for provider, queue in self._queues.items():
            queue.capacity = self._capacities.get(provider, 0)
            self._dispatch(provider)

    def add(self, job_id: str, *, provider: str, user_id: int) -> None:
        """Queue a job (idempotent) and submit what fits."""
        if job_id in self._owner:
            return
        queue = self._queue(provider)
        queue.people.setdefault(user_id, deque()).append(job_id)
        self._owner[job_id] = (provider, user_id)
        self._dispatch(provider)

    def adopt(self, job_id: str, *, provider: str, user_id: int) -> None:
        """Count a job already at the provider (found at startup) against its provider's cap."""
        if job_id not in self._owner:
            self._owner[job_id] = (provider, user_id)
            self._queue(provider).in_flight.add(job_id)

    def released(self, job_id: str) -> None:
        """The job left the provider (done, failed, canceled) or was dropped from the queue."""
        owner = self._owner.pop(job_id, None)
        if owner is None:
            return
        provider, user_id = owner
        queue = self._queue(provider)
        queue.in_flight.discard(job_id)
        waiting = queue.people.get(user_id)
        if waiting is not None and job_id in waiting:
            waiting.remove(job_id)
            if not waiting:
                del queue.people[user_id]
        if user_id not in queue.people and not any(
            self._owner.get(job) == (provider, user_id) for job in queue.in_flight
        ):
            queue.served.pop(user_id, None)  # nothing waiting or running: a fresh start next time
        self._dispatch(provider)

    def position(self, job_id: str) -> int | None:
        """1 for the next job the provider takes; None when the job isn't waiting."""
        owner = self._owner.get(job_id)
        if owner is None:
            return None
        provider, _ = owner
        queue = self._queue(provider)
        if job_id in queue.in_flight:
            return None
        for place, queued in enumerate(self._order(queue), start=1):
            if queued == job_id:
                return place
        return None

    def capacity(self, provider: str) -> int:
        return self._capacities.get(provider, 0)

    def in_flight(self, provider: str) -> list[str]:
        """The jobs holding the provider's slots now."""
        return sorted(self._queue(provider).in_flight)

    def waiting(self, provider: str | None = None) -> int:
        queues = [self._queue(provider)] if provider else list(self._queues.values())
        return sum(len(jobs) for queue in queues for jobs in queue.people.values())

    @staticmethod
    def _order(queue: _ProviderQueue) -> list[str]:
        """The order the waiting jobs would be started in, by the same rule as :meth:`_dispatch`."""
        people = OrderedDict((person, deque(jobs)) for person, jobs in queue.people.items())
        served = dict(queue.served)
        order: list[str] = []
        while people:
            person = _next_person(people, served)
            order.append(people[person].popleft())
            served[person] = served.get(person, 0) + 1
            if not people[person]:
                del people[person]
        return order

    def _dispatch(self, provider: str) -> None:
        queue = self._queue(provider)
        started = False
        while queue.people and (queue.capacity == 0 or len(queue.in_flight) < queue.capacity):
            user_id = _next_person(queue.people, queue.served)
            jobs = queue.people[user_id]
            job_id = jobs.popleft()
            queue.served[user_id] = queue.served.get(user_id, 0) + 1
            if not jobs:
                del queue.people[user_id]
            queue.in_flight.add(job_id)
            started = True
            self._start(job_id)
        if started and queue.people:
            self._on_moved(self._order(queue)[:MOVED_NOTICES])
