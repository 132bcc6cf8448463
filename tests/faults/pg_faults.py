"""One-shot PostgreSQL faults for :class:`tests.faults.tcp_proxy.TcpFaultProxy`: where in a
client's message stream they fire (:class:`Trigger`), what they do (:class:`Action`), and the
per-connection state that finds those places (:class:`TransactionTracker`).
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field

from tests.faults.pg_wire import COPY_DONE, QUERY, SYNC, Message, first_word


class Trigger(enum.Enum):
    COMMIT = "commit"  # the COMMIT of a transaction whose statements contain the match
    COPY_DONE = "copy_done"  # the CopyDone of a COPY whose statement contains the match


class Action(enum.Enum):
    FORWARD_THEN_CUT = "forward_then_cut"  # forward, drop the answer, close both sides
    HOLD = "hold"  # do not forward; the connection stalls until released or closed


@dataclass
class ArmedFault:
    """One armed fault; ``fired`` is set when it acted, ``statements`` holds the statements of
    the transaction (or the COPY) it acted on."""

    trigger: Trigger
    action: Action
    match: str | None
    fired: threading.Event = field(default_factory=threading.Event)
    statements: tuple[str, ...] = ()

    def wait(self, timeout: float) -> None:
        """Wait until the fault fired; AssertionError naming it otherwise."""
        if not self.fired.wait(timeout):
            raise AssertionError(
                f"fault {self.action.value} at {self.trigger.value} (match {self.match!r}) "
                f"did not fire within {timeout} s"
            )

    def applies(self, boundary: Boundary) -> bool:
        if self.trigger is not boundary.trigger:
            return False
        if boundary.hold_only and self.action is not Action.HOLD:
            return False
        return self.match is None or any(self.match in s for s in boundary.statements)

    def summary(self, width: int = 60) -> str:
        """The statements it acted on, each cut to ``width`` characters, on one line."""
        return " | ".join(" ".join(s.split())[:width] for s in self.statements)


@dataclass
class Boundary:
    """A place in the client's stream where a fault may fire."""

    trigger: Trigger
    statements: tuple[str, ...]  # the transaction's, or the COPY statement
    hold_only: bool  # the Parse of an extended-protocol COMMIT: a cut waits for its Sync


@dataclass
class TransactionTracker:
    """Follows one connection's client messages: the open transaction's statements, the
    current COPY, and an extended-protocol COMMIT waiting for its Sync."""

    statements: list[str] = field(default_factory=list)
    copy_statement: str = ""
    extended_commit: bool = False

    def boundary(self, message: Message) -> Boundary | None:
        if message.kind == COPY_DONE:
            return Boundary(Trigger.COPY_DONE, (self.copy_statement,), False)
        if message.kind == SYNC and self.extended_commit:
            self.extended_commit = False
            return Boundary(Trigger.COMMIT, self._end_transaction(), False)
        statement = message.statement
        if statement is None:
            return None
        word = first_word(statement)
        if word in ("BEGIN", "START"):
            self.statements = [statement]
        elif word in ("COMMIT", "END"):
            if message.kind == QUERY:
                return Boundary(Trigger.COMMIT, self._end_transaction(), False)
            self.extended_commit = True
            return Boundary(Trigger.COMMIT, tuple(self.statements), True)
        elif word in ("ROLLBACK", "ABORT"):
            self.statements = []
        else:
            self.statements.append(statement)
            if word == "COPY":
                self.copy_statement = statement
        return None

    def _end_transaction(self) -> tuple[str, ...]:
        statements = tuple(self.statements)
        self.statements = []
        return statements
