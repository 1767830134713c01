"""The engine's loops for multi-turn sessions (perfbench/workload/sessions.py says what a session sends).

A session's turns go one after another on one slot: turn k+1 is due when turn k's answer ended
plus a think time, so that due time is its t0 and any lag of the client shows as queue time.
Closed loop: ``concurrency`` sessions in flight; open loop: a new session at each arrival.
Each turn is a request with its own index in the step: a session claims the next indexes of the
step for all its turns when it starts, so indexes stay unique and follow the sessions' order.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Sequence

from perfbench.engine.answers import AnswerReader, Exchange
from perfbench.engine.event_loop import Start, gather_or_cancel, run_in_flight, sleep_until
from perfbench.engine.plan import PreparedRequest, StepPlan
from perfbench.results.records import RequestRecord
from perfbench.workload.sessions import SessionWorkload

SendRequest = Callable[[int, int, bool, int, PreparedRequest], Awaitable[Exchange]]  # (step, index, warm-up, t0, request)


class SessionLoops:
    """Runs sessions through the engine's counted send; hands each turn's record to ``finished``."""

    def __init__(self, workload: SessionWorkload, exchange: SendRequest, answers: AnswerReader,
                 finished: Callable[[RequestRecord], None]) -> None:
        self.workload = workload
        self.started = 0  # sessions claimed so far in the run (warm-up included): session s runs conversation s
        self._exchange = exchange
        self._answers = answers
        self._finished = finished

    def turns_ahead(self, sessions: int) -> int:
        """Requests the next ``sessions`` sessions send when every turn succeeds."""
        return self.workload.turns(self.started, sessions)

    async def closed_loop(self, plan: StepPlan, number: int | None, duration_s: float | None, *,
                                   warmup: bool, start_ns: int) -> int:
        """``plan.concurrency`` sessions in flight; a slot starts its next session when its last one ended."""
        stop_ns = start_ns + int(duration_s * 1e9) if duration_s is not None else None
        claimed, first_index, sent = 0, 0, [0]

        async def slot() -> None:
            nonlocal claimed, first_index
            due_ns = start_ns
            while (number is None or claimed < number) and (stop_ns is None or due_ns < stop_ns):
                session = self.started
                self.started += 1
                claimed += 1
                index = first_index  # the session's turns take the next indexes of the step
                first_index += self.workload.turn_count(session)
                due_ns = await self.session(plan.step, session, index, warmup, due_ns, stop_ns, sent)

        slots = plan.concurrency if number is None else min(plan.concurrency, number)
        await gather_or_cancel([slot() for _ in range(slots)])
        return sent[0]

    async def open_loop(self, plan: StepPlan, start_ns: int, offsets_s: Sequence[float]) -> int:
        """A new session at each offset; at most ``plan.concurrency`` sessions in flight (waiting is queue
        time, before the session's task exists: the step holds only the sessions in flight)."""
        slots = asyncio.Semaphore(plan.concurrency)
        sent = [0]

        async def run(session: int, index: int, due_ns: int) -> None:
            try:
                await self.session(plan.step, session, index, False, due_ns, None, sent)
            finally:
                slots.release()

        async def dispatch(start: Start) -> None:
            index = 0
            for offset_s in offsets_s:
                due_ns = start_ns + int(offset_s * 1e9)
                await sleep_until(due_ns)
                await slots.acquire()
                session = self.started
                self.started += 1
                start(run(session, index, due_ns))
                index += self.workload.turn_count(session)

        await run_in_flight(dispatch)
        return sent[0]

    async def session(self, step: int, session: int, first_index: int, warmup: bool, due_ns: int,
                       stop_ns: int | None, sent: list[int]) -> int:
        """One session's turns in order, each with the history so far; returns when its last answer ended.

        Turn k+1 is due at turn k's end plus the think time: that is its t0. Its body is built while
        it waits (history encoding is the client's work, as in any real client); a turn that fails
        ends the session, as a user whose answer never came would not go on.
        """
        conversation = self.workload.conversation(session)
        history: list[dict] = list(conversation.system)
        end_ns = due_ns
        for turn, user_content in enumerate(conversation.user_turns):
            if turn:
                due_ns = end_ns + self.workload.think_ns(session, turn)
                if stop_ns is not None and due_ns >= stop_ns:
                    break
            history.append({"role": "user", "content": user_content})
            body, input_tokens = self.workload.body(session, turn, history)
            request = PreparedRequest(body=body, input_tokens=input_tokens)
            await sleep_until(due_ns)  # never before the think time is over
            sent[0] += 1
            exchange = await self._exchange(step, first_index + turn, warmup, due_ns, request)
            end_ns = exchange.end_ns
            # The next turn needs this answer's text now: interpreted here, not by the finisher.
            record, answer = self._answers.record_and_text(exchange, session=session, turn=turn)
            self._finished(record)
            if not record.ok:
                break
            history.append({"role": "assistant", "content": answer})
        return end_ns
