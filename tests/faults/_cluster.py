"""Several Encore processes as one deployment, each a real OS process that a test can kill or restart.

:class:`Cluster` runs ``processes`` copies of ``python -m bot run`` (through ``tests/faults/botproc.py``, as the
kill -9 tests do; :class:`~tests.faults._process.BotProcess` each) the way an operator runs them behind a load
balancer:

* one PostgreSQL database (a fresh one on the tests' throwaway server, ``tests/postgres.py``);
* one data directory, shared by all (the volume every process mounts: finished tracks, deliveries);
* the simulator's ``shard_count`` gateway shards split between them in ranges (``[discord] shard_count`` and
  ``shard_ids``): 6 shards over 3 processes is ``[0, 1]``, ``[2, 3]``, ``[4, 5]``;
* in webhook mode, one public URL for Replicate's webhooks: a :class:`~tests.faults._balancer.Balancer` that
  spreads them over the processes' web ports round robin and skips the dead; in poll mode, no webhooks.

Each process has a directory of its own for its config file and its logs (``node-<n>/bot-<incarnation>.log``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg

from tests.fakes.discord import DiscordSimulator
from tests.fakes.discord.sharding import shard_of
from tests.fakes.replicate import FakeReplicate
from tests.faults._balancer import Backend, Balancer
from tests.faults._process import BotProcess, Progress, listen_port


def shard_ranges(processes: int, shard_count: int) -> list[list[int]]:
    """``shard_count`` shards in ``processes`` consecutive ranges, as even as they go."""
    bounds = [n * shard_count // processes for n in range(processes + 1)]
    return [list(range(bounds[n], bounds[n + 1])) for n in range(processes)]


class Cluster:
    def __init__(
        self,
        sim: DiscordSimulator,
        fake: FakeReplicate,
        work_dir: Path,
        database_url: str | None,
        *,
        processes: int,
        shard_count: int,
        webhooks: bool,
        progress: Progress,
        sections: dict[str, dict[str, Any]],
    ) -> None:
        """``database_url``: PostgreSQL's (None: SQLite in the shared directory, for one process only).
        ``sections``: settings every process shares ([jobs], [limits], ...), besides those set here."""
        self.sim = sim
        self.fake = fake
        self.database_url = database_url
        self.shard_count = shard_count
        self.data_dir = work_dir / "shared-data"
        self.shards = shard_ranges(processes, shard_count)
        ports = [listen_port() for _ in range(processes)]
        self.balancer = (
            Balancer([Backend(f"node-{n}", port) for n, port in enumerate(ports)], port=listen_port())
            if webhooks
            else None
        )
        self.nodes: list[BotProcess] = []
        for n, port in enumerate(ports):
            node_dir = work_dir / f"node-{n}"
            node_dir.mkdir(parents=True)
            config: dict[str, dict[str, Any]] = {name: dict(values) for name, values in sections.items()}
            config["discord"] = {
                "dev_guild_ids": [],  # global commands: one sync for every server
                "card_edit_interval_s": 0.0,
                **config.get("discord", {}),
                "shard_count": shard_count,
                "shard_ids": self.shards[n],
            }
            config["replicate"] = {"api_base": fake.base_url, "retry_base_s": 0.01, **config.get("replicate", {})}
            config["webhooks"] = {"host": "127.0.0.1", "port": port}
            if self.balancer is not None:
                config["webhooks"]["public_url"] = self.balancer.url
            config["storage"] = {**config.get("storage", {}), "dir": str(self.data_dir), "url": database_url or ""}
            config["logging"] = {"level": "INFO"}
            self.nodes.append(BotProcess(sim, fake, node_dir, config, progress))
        self._db: asyncpg.Connection | None = None

    def node_of(self, guild_id: int) -> int:
        """The process holding ``guild_id``'s shard (it gets that server's interactions)."""
        shard = shard_of(guild_id, self.shard_count)
        return next(n for n, shards in enumerate(self.shards) if shard in shards)

    async def start(self) -> None:
        """The balancer, then every process at once; returns when each has all its shards on the gateway."""
        if self.balancer is not None:
            await self.balancer.start()
        if self.database_url is not None:
            self._db = await asyncpg.connect(self.database_url)
        await asyncio.gather(*(node.start() for node in self.nodes))

    async def jobs(self) -> list[dict[str, Any]]:
        """Every job row, straight from PostgreSQL."""
        assert self._db is not None, "jobs() reads PostgreSQL"
        return [dict(row) for row in await self._db.fetch("SELECT * FROM jobs")]

    async def leases(self) -> dict[str, list[str]]:
        """Every lease row, by its key (a job id, mostly): kind, holder, and how long it has to run."""
        assert self._db is not None, "leases() reads PostgreSQL"
        rows = await self._db.fetch(
            "SELECT kind, key, holder, expires_at - extract(epoch FROM clock_timestamp()) AS left_s FROM leases"
        )
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(row["key"], []).append(f"{row['kind']} by {row['holder']} ({row['left_s']:.1f} s left)")
        return found

    def log_lines(self, *needles: str) -> list[str]:
        """Lines of every process's logs containing any of ``needles``, each prefixed with its process."""
        return [f"node-{n} {line}" for n, node in enumerate(self.nodes) for line in node.log_lines(*needles)]

    def tails(self, lines: int = 15) -> str:
        return "\n".join(f"node-{n}: {node.tail(lines)}" for n, node in enumerate(self.nodes))

    async def close(self) -> None:
        """Kill and reap every process (the database is read as they leave it), then the balancer."""
        await asyncio.gather(*(node.close() for node in self.nodes))
        if self.balancer is not None:
            await self.balancer.close()
        if self._db is not None:
            await self._db.close()
