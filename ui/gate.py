"""The gate every turn passes (HTTP API and MCP): a bounded number admitted, a bounded wait for a worker.

At most `limit` turns are admitted at once (the rest get 503 with Retry-After, before any work). An
admitted turn waits for one of `workers` turn slots; one that waited `queue_s` without getting a slot runs
anyway, without the LLM (the retriever's answer, with fallback_reason), so that no admitted turn queues
behind the model for minutes. Turn steps run on threads of their own, so the cheap routes stay responsive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio

from agent.assemble import Agent
from agent.settings import ApiConfig
from core.errors import Overloaded

T = TypeVar("T")


class TurnGate:
    def __init__(self, limit: int, workers: int, queue_s: float) -> None:
        self.limit = limit
        self.active = 0
        self.workers = workers
        self.queue_s = queue_s
        self.slots = anyio.CapacityLimiter(workers)
        self.threads = anyio.CapacityLimiter(limit)  # an admitted turn's steps never wait for a thread

    @classmethod
    def for_agent(cls, agent: Agent, config: ApiConfig) -> TurnGate:
        """The gate for an agent's turns: with a served LLM its workers mostly wait, so more of them."""
        served = agent.llm is not None and agent.settings.llm.served
        return cls(config.max_pending_turns, config.turn_threads(served), config.turn_queue_s)

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[str | None]:
        """Admit a turn (Overloaded when `limit` are in progress) and hold a worker slot for it to the end.
        Yields None, or why the turn must go without the LLM: it waited `queue_s` for a slot."""
        if self.active >= self.limit:
            raise Overloaded(f"{self.active} turns are in progress; try again shortly", retry_after_s=2)
        self.active += 1
        holder, got = object(), False
        try:
            with anyio.move_on_after(self.queue_s):
                await self.slots.acquire_on_behalf_of(holder)
                got = True
            yield None if got else (f"the server is busy: this turn waited {self.queue_s:g} s for one of "
                                    f"{self.workers} turn workers, so it was answered without the LLM")
        finally:
            if got:
                self.slots.release_on_behalf_of(holder)
            self.active -= 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """One step of an admitted turn, on a thread."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.threads)
