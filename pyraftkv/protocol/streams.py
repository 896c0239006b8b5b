"""The life of one stream of the native protocol, as one transition table both sides use.

A stream id names one call. A unary call is a request answered by one REPLY or ERROR; the
client may give up on it (FLAG_END), which cancels it. A streaming call (Watch,
LeaseKeepAlive, Observe, Snapshot) takes any number of requests and gives any number of
MESSAGEs; the client half-closes it with FLAG_END, the server ends it with END or ERROR.
Once ended, a stream id is idle again.

A move the table does not allow is a protocol error on that stream only: the server
answers it with an error on the stream; the client fails that call. Neither raises.
"""

from __future__ import annotations

from enum import IntEnum


class State(IntEnum):
    IDLE = 0  # no call on this id (never used, or ended)
    AWAITING_REPLY = 1  # a unary request was sent; its REPLY or ERROR has not come
    OPEN = 2  # a streaming call; both sides may still send
    HALF_CLOSED = 3  # the client sent FLAG_END; the server may still send until it ends


class Move(IntEnum):
    CALL = 0  # client: a request of a unary method
    STREAM_SEND = 1  # client: a request of a streaming method
    CLIENT_END = 2  # client: FLAG_END
    REPLY = 3  # server: the answer of a unary call
    ERROR = 4  # server: the call or stream failed
    MESSAGE = 5  # server: one message of a stream
    END = 6  # server: the stream is over


IDLE, AWAITING_REPLY, OPEN, HALF_CLOSED = State
CALL, STREAM_SEND, CLIENT_END, REPLY, ERROR, MESSAGE, END = Move

TRANSITIONS: dict[tuple[State, Move], State] = {
    (IDLE, CALL): AWAITING_REPLY,
    (AWAITING_REPLY, REPLY): IDLE,
    (AWAITING_REPLY, ERROR): IDLE,
    (AWAITING_REPLY, CLIENT_END): IDLE,  # the client gave up: the call is cancelled
    (IDLE, STREAM_SEND): OPEN,
    (OPEN, STREAM_SEND): OPEN,
    (OPEN, MESSAGE): OPEN,
    (OPEN, CLIENT_END): HALF_CLOSED,
    (OPEN, END): IDLE,
    (OPEN, ERROR): IDLE,
    (HALF_CLOSED, MESSAGE): HALF_CLOSED,
    (HALF_CLOSED, END): IDLE,
    (HALF_CLOSED, ERROR): IDLE,
    (IDLE, CLIENT_END): IDLE,  # closing a stream the server already ended: nothing to do
}

# Reply kinds on the wire (frames.py) as moves.
REPLY_KIND_MOVES = {0: REPLY, 1: ERROR, 2: MESSAGE, 3: END}


def request_move(streaming: bool, flags_end: bool) -> Move:
    """The move a client's request frame makes."""
    if flags_end:
        return CLIENT_END
    return STREAM_SEND if streaming else CALL


class Streams:
    """Every stream's state on one connection (only non-idle ones are kept)."""

    __slots__ = ("_states",)

    def __init__(self) -> None:
        self._states: dict[int, State] = {}

    def state(self, stream: int) -> State:
        return self._states.get(stream, IDLE)

    def move(self, stream: int, move: Move) -> State | None:
        """Apply ``move``; the state it left, or None (and no change) if the table forbids
        it."""
        states = self._states
        before = states.get(stream, IDLE)
        after = TRANSITIONS.get((before, move))
        if after is None:
            return None
        if after is IDLE:
            states.pop(stream, None)
        else:
            states[stream] = after
        return before

    def __len__(self) -> int:
        return len(self._states)
