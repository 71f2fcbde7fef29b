"""The command channel: requests in from MQTT, checked, run once, answered.

paho's network thread only appends a message to a bounded inbox (`on_message`); the
worker `commands` reads it, checks it in a fixed order (size before parsing, then JSON,
request_id, command, permission, arguments, repeat, busy) and answers every refusal
itself; an accepted request runs in its own worker `command-<name>`. What each check
answers is in docs/commands.md; how each request ended is counted (`stats()`, shown in
health's `commands` section).
"""

from __future__ import annotations

import collections
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from edge_agent.commands.box import Box
from edge_agent.commands.dedupe import RequestLog, Seen
from edge_agent.commands.registry import Registry
from edge_agent.commands.results import ResultSender, as_duplicate, result_payload
from edge_agent.commands.runner import Runner
from edge_agent.commands.spec import (
    Call,
    Code,
    Command,
    CommandError,
    Outcome,
    Reply,
    Request,
)
from edge_agent.commands.stats import ChannelStats, Tally
from edge_agent.config.commands import CommandsConfig
from edge_agent.redact import redact
from edge_agent.workers import Worker

log = logging.getLogger(__name__)

INBOX_MESSAGES = 1024
INBOX_BYTES = 8 * 1024 * 1024
"""Requests waiting for the worker, at most (count and payload bytes); more are dropped
and counted: a flood costs bounded memory, never the frames' time."""
REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
"""1-128 printable ASCII characters, no spaces (a UUID, a ULID, `deploy-42`)."""
MAX_NAME = 1024
"""Longest command part of a topic that is answered (its result topic must stay valid)."""
MAX_STORED_RESULT = 16 * 1024
"""A longer result (a snapshot's JPEG) is stored for repeats without its `result`."""
SMALL_RESULT = 2048
"""A refused result longer than this is replaced by a short `failed` one."""
MAX_REASON = 1000
"""Longest reason text (characters) in a result."""
LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class _Inbound:
    name: str
    payload: bytes | None
    """None when it was over the size limit (only `size` kept)."""
    size: int
    received_at: float
    retained: bool = False
    """Delivered from the broker's retained store (a subscription replay), not live."""


class Rejection(Exception):  # noqa: N818 (a verdict, not an error of ours)
    """A request refused by a check; answered with `code` and `reason`."""

    def __init__(self, code: Code, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.request_id = code, reason, request_id


class CommandChannel:
    """Turns messages on `<base>/cmd/<name>` into at most one run and one final result."""

    def __init__(self, registry: Registry, box: Box,
                 sender_for: Callable[[threading.Event], ResultSender],
                 requests: RequestLog) -> None:
        """`sender_for(stopping)` makes the ResultSender (the publisher is bound in it)."""
        self.registry = registry
        self.box = box
        self.requests = requests
        self.stopping = threading.Event()
        self.results: ResultSender = sender_for(self.stopping)
        self._inbox: collections.deque[_Inbound] = collections.deque()
        self._inbox_bytes = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._runners: dict[str, Runner] = {}
        self.tally = Tally()
        self._dropped_logged_at = float("-inf")
        self.worker = Worker("commands", self._serve)

    # -- paho's network thread -----------------------------------------------------------

    @property
    def config(self) -> CommandsConfig:
        """The running config's section: a reload changes `allow` and the limits at once
        (`enabled: false` then refuses everything, until a restart unsubscribes)."""
        return self.box.running_config().commands

    def on_message(self, name: str, payload: bytes, retained: bool = False) -> None:
        """A message on `cmd/<name>` (the publisher strips the prefix). Never blocks.
        `retained`: the broker replayed it from its retained store (refused when checked)."""
        if name == "result" or name.endswith("/result"):
            return  # a result (ours, or someone's): never answered, or we would loop
        if len(name) > MAX_NAME:
            self.tally.add_received(dropped=True)  # no topic a broker would take to answer on
            return
        now = time.time()
        limit = self._limit(name)
        kept = payload if len(payload) <= limit else None
        cost = len(kept) if kept is not None else 0
        with self._wake:
            if len(self._inbox) >= INBOX_MESSAGES or self._inbox_bytes + cost > INBOX_BYTES:
                dropped = True
            else:
                self._inbox.append(_Inbound(name, kept, len(payload), now, retained))
                self._inbox_bytes += cost
                self._wake.notify()
                dropped = False
        dropped_so_far = self.tally.add_received(dropped)
        if dropped and now - self._dropped_logged_at >= LOG_EVERY_S:
            self._dropped_logged_at = now
            log.warning("commands: inbox full, %d requests dropped so far (unanswered)",
                        dropped_so_far)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """No new requests; running commands get `stopping` and `timeout` to finish."""
        self.stopping.set()
        with self._wake:
            self._wake.notify_all()
        self.worker.stop()
        self.worker.join(timeout)
        deadline = time.monotonic() + timeout
        for runner in list(self._runners.values()):
            runner.join(max(0.0, deadline - time.monotonic()))
        self.requests.close()

    def workers(self) -> list[Worker]:
        return [self.worker]

    def stats(self) -> ChannelStats:
        """Counts since the start and what waits or runs now: health's `commands`."""
        with self._lock:
            waiting = len(self._inbox)
            running = sum(runner.busy for runner in self._runners.values())
        return self.tally.stats(waiting, running)

    # -- the worker ----------------------------------------------------------------------

    def _serve(self) -> None:
        while not self.stopping.is_set():
            with self._wake:
                if not self._inbox:
                    self._wake.wait(0.5)
                    continue
                inbound = self._inbox.popleft()
                self._inbox_bytes -= len(inbound.payload or b"")
            try:
                self._handle(inbound)
            except Exception:  # one bad request never stops the channel
                self.tally.add_dropped()  # unanswered: health counts it with the drops
                log.exception("commands: handling a request on cmd/%.80s failed", inbound.name)

    def _handle(self, inbound: _Inbound) -> None:
        name = inbound.name
        try:
            command, request_id, args = self._check(inbound)
        except Rejection as refusal:
            self._answer(name, refusal.request_id, inbound.received_at,
                         Reply.rejected(refusal.reason, refusal.code))
            return
        with self._lock:  # stats() counts the runners from the health thread
            runner = self._runners.get(name)
            if runner is None:
                runner = self._runners[name] = Runner(name, self.stopping)
        try:
            seen = self.requests.seen(name, request_id)
            claimed = seen is None and not runner.busy and self.requests.claim(name, request_id)
        except sqlite3.Error as exc:  # a full or failing disk: not run, since not recorded
            self._answer(name, request_id, inbound.received_at, Reply.failed(
                f"the request id cannot be recorded ({exc}); not run", Code.UNAVAILABLE))
            return
        if seen is not None:
            self._repeat(name, request_id, inbound.received_at, seen)
        elif not claimed:
            self._answer(name, request_id, inbound.received_at, Reply.rejected(
                f"busy: another {name} is running; try again when it has finished",
                Code.BUSY))
        else:
            self._run(runner, command, Request(name, request_id, inbound.received_at), args)

    def _check(self, inbound: _Inbound) -> tuple[Command, str, Any]:
        """The command, request_id and validated arguments; raises Rejection."""
        name = inbound.name
        if inbound.payload is None:
            raise Rejection(Code.TOO_LARGE, f"the request is {inbound.size} bytes; the limit "
                            f"for {name} is {self._limit(name)} bytes (not read)")
        try:
            body = json.loads(inbound.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise Rejection(Code.MALFORMED, f"not UTF-8 JSON: {_short(str(exc))}") from None
        if not isinstance(body, dict):
            raise Rejection(Code.NOT_OBJECT, f"the request must be a JSON object, not "
                            f"{_json_type(body)}")
        request_id = body.get("request_id")
        if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
            shown = "missing" if "request_id" not in body else (
                f"a {_json_type(request_id)}" if not isinstance(request_id, str)
                else "not 1-128 printable ASCII characters without spaces")
            raise Rejection(Code.BAD_REQUEST_ID, f"request_id is {shown}; it must be a string "
                            "of 1-128 printable ASCII characters without spaces")
        if inbound.retained:  # once its id is forgotten it would run again: never obey it
            raise Rejection(Code.RETAINED, "the request was published retained; a command "
                            "must not be (it would run again for later sessions): publish it "
                            "without the retain flag, and clear the retained one with an empty "
                            "retained message", request_id)
        command = self.registry.get(name)
        if command is None:
            raise Rejection(Code.UNKNOWN_COMMAND, f"unknown command {_short(name)!r}; known: "
                            f"{', '.join(self.registry.names())}", request_id)
        config = self.config
        if not config.permits(name, command.changes_box):
            why = (f"{name} changes the box and is not in commands.allow of this box's "
                   "config") if config.enabled else "commands.enabled is false (reloaded)"
            raise Rejection(Code.NOT_ALLOWED, why, request_id)
        arguments = {key: value for key, value in body.items() if key != "request_id"}
        try:
            args = command.args.model_validate(arguments)
        except ValidationError as exc:
            raise Rejection(Code.BAD_ARGUMENTS, _argument_errors(exc), request_id) from None
        return command, request_id, args

    def _repeat(self, name: str, request_id: str, received_at: float, seen: Seen) -> None:
        """A request_id already claimed: its stored result again, or a word on why not."""
        if seen.result is not None:
            self.results.send(name, as_duplicate(seen.result, received_at))
            self.tally.add_duplicate()
            return
        if seen.interrupted:
            reply = Reply.failed("the agent stopped while this request ran; it is not run "
                                 "again (send a new request_id to run it)", Code.INTERRUPTED)
            self._answer(name, request_id, received_at, reply, duplicate=True, store=False)
            return
        now = time.time()
        payload = result_payload(
            command=name, request_id=request_id, outcome=Outcome.PROGRESS,
            received_at=received_at, started_at=now, finished_at=now, duration_ms=0.0,
            reason="this request_id is running now; its result follows", step="running")
        self.results.send(name, as_duplicate(payload, received_at))
        self.tally.add_duplicate()

    def _run(self, runner: Runner, command: Command, request: Request, args: Any) -> None:
        progress = _Progress(self, request)
        call = Call(request, args, self.box, progress, self.config, self.stopping)

        def job(free: Callable[[], None]) -> None:
            started, started_mono = time.time(), time.monotonic()
            try:
                reply = command.handler(call)
            except CommandError as error:
                reply = Reply.from_error(error)
            except Exception as exc:  # a handler bug fails the request, not the agent
                log.exception("commands: %s (request %s) failed", command.name,
                              request.request_id)
                text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                reply = Reply.failed(redact(text), Code.ERROR)
            free()
            self._answer(command.name, request.request_id, request.received_at, reply,
                         started=(started, started_mono))

        runner.try_run(job)  # free: only this thread hands out jobs, and it checked

    def _answer(self, name: str, request_id: str | None, received_at: float, reply: Reply,
                *, started: tuple[float, float] | None = None, duplicate: bool = False,
                store: bool = True) -> None:
        """Publish a final result; store it first when the request was claimed."""
        now = time.time()
        started_at, started_mono = started or (now, time.monotonic())
        outcome = reply.outcome
        try:
            payload = result_payload(
                command=name, request_id=request_id, outcome=reply.outcome,
                received_at=received_at, started_at=started_at, finished_at=now,
                duration_ms=(time.monotonic() - started_mono) * 1000, code=reply.code,
                reason=_short(reply.reason, MAX_REASON) if reply.reason else None,
                result=reply.result,
            )
        except (TypeError, ValueError) as exc:  # a handler returned something not JSON
            log.error("commands: result of %s is not JSON data: %s", name, exc)
            outcome = Outcome.FAILED
            payload = result_payload(
                command=name, request_id=request_id, outcome=Outcome.FAILED,
                received_at=received_at, started_at=started_at, finished_at=now,
                duration_ms=(time.monotonic() - started_mono) * 1000, code=Code.ERROR,
                reason=f"the command's result could not be encoded: {exc}",
            )
        if duplicate:
            payload = as_duplicate(payload, received_at)
        if store and started is not None and request_id is not None:
            self.requests.finish(name, request_id, _to_keep(payload))
        if not self.results.send(name, payload) and len(payload) > SMALL_RESULT:
            outcome = Outcome.FAILED  # what the operator gets, and so what health counts
            self.results.send(name, result_payload(  # an answer all the same
                command=name, request_id=request_id, outcome=Outcome.FAILED,
                received_at=received_at, started_at=started_at, finished_at=now,
                duration_ms=(time.monotonic() - started_mono) * 1000, code=Code.ERROR,
                reason=f"the {reply.outcome.value} result ({len(payload)} bytes) could not "
                       "be sent: over the broker's limit?"))
        if duplicate:
            self.tally.add_duplicate()
        else:
            self.tally.add_answer(outcome)

    def _limit(self, name: str) -> int:
        command = self.registry.get(name)
        limit = self.config.max_payload_bytes
        if command is not None and command.max_payload is not None:
            limit = min(limit, command.max_payload)
        return limit


class _Progress:
    """`progress(step, **fields)` for one request: an intermediate result, never raising."""

    def __init__(self, channel: CommandChannel, request: Request) -> None:
        self._channel, self._request = channel, request
        self._started = time.time(), time.monotonic()

    def __call__(self, step: str, **fields: Any) -> None:
        request, now = self._request, time.time()
        try:
            payload = result_payload(
                command=request.name, request_id=request.request_id, outcome=Outcome.PROGRESS,
                received_at=request.received_at, started_at=self._started[0], finished_at=now,
                duration_ms=(time.monotonic() - self._started[1]) * 1000, result=fields,
                step=step,
            )
            self._channel.results.send(request.name, payload)
        except Exception:  # progress is a courtesy; the command goes on
            log.exception("commands: progress of %s not sent", request.name)


def _to_keep(payload: bytes) -> bytes:
    """The result as stored for repeats: whole, or without `result` when too long."""
    if len(payload) <= MAX_STORED_RESULT:
        return payload
    body = json.loads(payload)
    body["result"] = {"not_kept": f"the result was {len(payload)} bytes; results over "
                                  f"{MAX_STORED_RESULT} bytes are not kept for repeats"}
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _argument_errors(exc: ValidationError) -> str:
    """`camera: Input should be a valid string; foo: unknown argument` (first five)."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "(arguments)"
        text = "unknown argument" if error["type"] == "extra_forbidden" else error["msg"]
        parts.append(f"{_short(where, 80)}: {text}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
