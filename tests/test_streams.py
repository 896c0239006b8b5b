"""The stream transition table of the native protocol, on its own."""

import itertools

from pyraftkv.protocol import streams as st


def test_unary_call_and_its_answer() -> None:
    streams = st.Streams()
    assert streams.move(1, st.CALL) is st.IDLE
    assert streams.state(1) is st.AWAITING_REPLY
    assert streams.move(1, st.CALL) is None  # a second request on a call in flight
    assert streams.move(1, st.MESSAGE) is None  # a unary call gets no stream messages
    assert streams.move(1, st.REPLY) is st.AWAITING_REPLY
    assert streams.state(1) is st.IDLE and len(streams) == 0
    assert streams.move(1, st.REPLY) is None  # answered once only


def test_a_cancelled_call_gets_no_answer() -> None:
    streams = st.Streams()
    streams.move(7, st.CALL)
    assert streams.move(7, st.CLIENT_END) is st.AWAITING_REPLY
    assert streams.move(7, st.REPLY) is None and streams.move(7, st.ERROR) is None


def test_stream_half_closed_by_the_client_then_ended_by_the_server() -> None:
    streams = st.Streams()
    for _ in range(3):
        streams.move(3, st.STREAM_SEND)
        assert streams.move(3, st.MESSAGE) is st.OPEN
    assert streams.move(3, st.CLIENT_END) is st.OPEN
    assert streams.move(3, st.STREAM_SEND) is None  # nothing more from the client
    assert streams.move(3, st.MESSAGE) is st.HALF_CLOSED
    assert streams.move(3, st.END) is st.HALF_CLOSED
    assert streams.move(3, st.MESSAGE) is None and streams.state(3) is st.IDLE
    assert streams.move(3, st.CLIENT_END) is st.IDLE  # a late close: nothing to do


def test_every_state_and_move_is_decided_and_server_moves_never_open_a_stream() -> None:
    server_moves = {st.REPLY, st.ERROR, st.MESSAGE, st.END}
    for state, move in itertools.product(st.State, st.Move):
        after = st.TRANSITIONS.get((state, move))
        if state is st.IDLE and move in server_moves:
            assert after is None
        if after is not None and move in server_moves:
            assert after in (st.IDLE, state)


def test_request_moves() -> None:
    assert st.request_move(streaming=False, flags_end=False) is st.CALL
    assert st.request_move(streaming=True, flags_end=False) is st.STREAM_SEND
    assert st.request_move(streaming=True, flags_end=True) is st.CLIENT_END
