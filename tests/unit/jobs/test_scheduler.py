"""Round-robin between people within a provider's cap."""

from __future__ import annotations

from bot.jobs.scheduler import Scheduler


def make(capacity: int) -> tuple[Scheduler, list[str], list[list[str]]]:
    started: list[str] = []
    moved: list[list[str]] = []
    return Scheduler({"p": capacity}, start=started.append, on_moved=moved.append), started, moved


def test_people_take_turns_not_one_fifo() -> None:
    scheduler, started, _ = make(1)
    for job in ("a1", "a2", "a3"):
        scheduler.add(job, provider="p", user_id=1)
    scheduler.add("b1", provider="p", user_id=2)
    scheduler.add("c1", provider="p", user_id=3)
    assert started == ["a1"]
    # a has been served once: b and c, who haven't, go first.
    assert [scheduler.position(j) for j in ("b1", "c1", "a2", "a3")] == [1, 2, 3, 4]
    for job in ("a1", "b1", "c1", "a2"):
        scheduler.released(job)
    assert started == ["a1", "b1", "c1", "a2", "a3"]


def test_cap_and_release() -> None:
    scheduler, started, _moved = make(2)
    for n in range(4):
        scheduler.add(f"j{n}", provider="p", user_id=n)
    assert started == ["j0", "j1"]
    assert scheduler.waiting("p") == 2
    scheduler.released("j3")  # canceled while waiting: leaves the queue, frees nothing
    assert started == ["j0", "j1"]
    scheduler.released("j0")
    assert started == ["j0", "j1", "j2"]
    assert scheduler.position("j2") is None  # running, not waiting
    scheduler.add("j0", provider="p", user_id=0)  # ids are never queued twice
    assert scheduler.waiting("p") == 1


def test_adopted_jobs_hold_their_slot() -> None:
    scheduler, started, _ = make(1)
    scheduler.adopt("old", provider="p", user_id=9)  # found at the provider after a restart
    scheduler.add("new", provider="p", user_id=1)
    assert started == []
    scheduler.released("old")
    assert started == ["new"]


def test_no_cap_means_everything_starts() -> None:
    scheduler, started, _ = make(0)
    for n in range(5):
        scheduler.add(f"j{n}", provider="p", user_id=1)
    assert len(started) == 5


def test_new_caps_apply_to_jobs_already_waiting() -> None:
    scheduler, started, _ = make(1)
    for n in range(4):
        scheduler.add(f"j{n}", provider="p", user_id=n)
    assert started == ["j0"]
    scheduler.set_capacities({"p": 3})  # raised: two waiting jobs start at once
    assert started == ["j0", "j1", "j2"]
    assert scheduler.capacity("p") == 3
    scheduler.set_capacities({"p": 1})  # lowered: running jobs finish, nothing new starts until under the cap
    scheduler.released("j0")
    scheduler.released("j1")
    assert started == ["j0", "j1", "j2"]
    scheduler.released("j2")
    assert started == ["j0", "j1", "j2", "j3"]
    scheduler.set_capacities({"p": 0})  # 0: no cap
    for n in range(4, 7):
        scheduler.add(f"j{n}", provider="p", user_id=n)
    assert started[-3:] == ["j4", "j5", "j6"]
