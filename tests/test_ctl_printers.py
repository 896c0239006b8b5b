"""The building blocks of pyraftkvctl's output: Go's JSON, tables, Go-style text, printers.

(test_ctl_etcd.py checks whole outputs against etcdctl; these pin the rules themselves,
including cases a live etcd rarely produces.)
"""

from __future__ import annotations

import io

import pytest

from pyraftkv.ctl.errors import CtlError
from pyraftkv.ctl.gojson import encode, go_name
from pyraftkv.ctl.gotext import go_duration, go_quote, hex_escape, humanize_bytes
from pyraftkv.ctl.printers import EndpointHealth, JsonPrinter, SimplePrinter, TablePrinter
from pyraftkv.ctl.table import display_width, render_table, wrap_words
from pyraftkv.proto import kv_pb2
from pyraftkv.proto import rpc_pb2 as rpc

# -- JSON as Go's encoder writes etcd's structs ------------------------------------------------


def test_zero_fields_are_left_out_and_set_messages_kept():
    assert encode(rpc.PutResponse()) == "{}"
    assert encode(rpc.PutResponse(header=rpc.ResponseHeader())) == '{"header":{}}'
    kv = kv_pb2.KeyValue(key=b"k", version=1)
    assert encode(rpc.PutResponse(prev_kv=kv)) == '{"prev_kv":{"key":"aw==","version":1}}'
    assert encode(rpc.RangeResponse(kvs=[], count=0, more=False)) == "{}"
    assert encode(rpc.RangeResponse(more=True, count=-1)) == '{"more":true,"count":-1}'


def test_numbers_bytes_enums_and_big_ids():
    member = rpc.Member(ID=2**64 - 1, name="n", peerURLs=["http://a:1", "http://b:2"])
    assert encode(member) == (
        '{"ID":18446744073709551615,"name":"n","peerURLs":["http://a:1","http://b:2"]}'
    )
    event = kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=kv_pb2.KeyValue(key=b"\xff\x00"))
    assert encode(event) == '{"type":1,"kv":{"key":"/wA="}}'
    assert encode(kv_pb2.Event(kv=kv_pb2.KeyValue())) == '{"kv":{}}'  # PUT is 0: left out


def test_oneofs_are_go_interface_fields():
    op = rpc.ResponseOp(response_delete_range=rpc.DeleteRangeResponse(deleted=2))
    assert encode(op) == '{"Response":{"ResponseDeleteRange":{"deleted":2}}}'
    assert encode(rpc.ResponseOp()) == "{}"
    assert go_name("response_txn") == "ResponseTxn"


def test_strings_are_escaped_like_go():
    assert encode('a<b>&c\u2028"\\\n') == '"a\\u003cb\\u003e\\u0026c\\u2028\\"\\\\\\n"'
    assert encode("ü") == '"ü"'
    assert encode({"k": [1, True, None, b"\x01"]}) == '{"k":[1,true,null,"AQ=="]}'
    assert encode(None) == "null"
    with pytest.raises(TypeError):
        encode(1.5)


# -- tables --------------------------------------------------------------------------------------


def test_wrapping_minimizes_raggedness_not_greedy():
    # Greedy would give "aaa bb" / "cc" / "ddddd"; even lines cost less.
    assert wrap_words(["aaa", "bb", "cc", "ddddd"], 6) == ["aaa", "bb cc", "ddddd"]
    assert wrap_words(["one"], 1) == ["one"]
    assert wrap_words(["a", "b"], 10) == ["a b"]


def test_table_centers_headers_and_right_aligns_cells():
    assert render_table(["ID", "NAME"], [["1", "long name"], ["22", "x"]]) == (
        "+----+-----------+\n"
        "| ID |   NAME    |\n"
        "+----+-----------+\n"
        "|  1 | long name |\n"
        "| 22 |         x |\n"
        "+----+-----------+\n"
    )
    assert render_table(["A"], []) == "+---+\n| A |\n+---+\n+---+\n"


def test_table_wraps_long_cells_at_thirty_columns():
    name = "a name with quite a few words in it, longer than thirty"
    table = render_table(["N", "X"], [[name, "1"]])
    lines = table.splitlines()
    assert lines[1] == "|               N                | X |"
    assert lines[3] == "|  a name with quite a few words | 1 |"
    assert lines[4] == "|      in it, longer than thirty |   |"
    assert len(lines) == 6
    # A word longer than the limit widens the column instead of being cut.
    wide = render_table(["N"], [["x" * 35 + " y"]])
    assert wide.splitlines()[3] == "| " + "x" * 35 + " |"


def test_display_width_counts_wide_characters_twice():
    assert display_width("ab") == 2
    assert display_width("日本") == 4
    assert display_width("e\u0301") == 1


# -- Go-style text -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (9, "9 B"), (10, "10 B"), (999, "999 B"), (1000, "1.0 kB"), (1049, "1.0 kB"),
     (20480, "20 kB"), (24576, "25 kB"), (1_500_000, "1.5 MB"), (2 * 10**9, "2.0 GB")],
)  # fmt: skip
def test_humanized_sizes(size, text):
    assert humanize_bytes(size) == text


@pytest.mark.parametrize(
    ("nanoseconds", "text"),
    [(0, "0s"), (850, "850ns"), (1_500, "1.5µs"), (1_623_080, "1.62308ms"), (2_000_000, "2ms"),
     (2_300_000_000, "2.3s"), (5_000_311_206, "5.000311206s"), (62_500_000_000, "1m2.5s"),
     (3_600_000_000_000, "1h0m0s"), (-1_500_000, "-1.5ms")],
)  # fmt: skip
def test_go_durations(nanoseconds, text):
    assert go_duration(nanoseconds) == text


def test_go_quote():
    assert go_quote(b"plain") == '"plain"'
    assert go_quote(b'a"b\\c\n\t') == '"a\\"b\\\\c\\n\\t"'
    assert go_quote(b"\x00\x7f\xff") == '"\\x00\\x7f\\xff"'
    assert go_quote("ü\u200b") == '"ü\\u200b"'
    assert hex_escape(b"k\x00") == b"\\x6b\\x00"


# -- printers --------------------------------------------------------------------------------------


def _simple(method: str, *args, hex_bytes: bool = False, **kwargs) -> tuple[bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    getattr(SimplePrinter(out, err, hex_bytes=hex_bytes), method)(*args, **kwargs)
    return out.getvalue(), err.getvalue()


def test_simple_watch_events_with_previous_values():
    resp = rpc.WatchResponse(
        events=[
            kv_pb2.Event(
                type=kv_pb2.Event.DELETE,
                kv=kv_pb2.KeyValue(key=b"k", mod_revision=3),
                prev_kv=kv_pb2.KeyValue(key=b"k", value=b"old\xff"),
            ),
            kv_pb2.Event(kv=kv_pb2.KeyValue(key=b"j", value=b"")),
        ]
    )
    assert _simple("watch", resp) == (b"DELETE\nk\nold\xff\nk\n\nPUT\nj\n\n", b"")
    assert _simple("watch", resp, hex_bytes=True)[0].startswith(b"DELETE\n\\x6b\n\\x6f\\x6c")


def test_simple_member_lines_pad_ids_like_go():
    resp = rpc.MemberRemoveResponse(header=rpc.ResponseHeader(cluster_id=0xB1B6C32EF18FDCA6))
    assert _simple("member_changed", "removed from", 0xB415BA5759A0BA2, resp)[0] == (
        b"Member  b415ba5759a0ba2 removed from cluster b1b6c32ef18fdca6\n"
    )
    assert _simple("move_leader", 0x2A, 0xB, rpc.MoveLeaderResponse())[0] == (
        b"Leadership transferred from 2a to b\n"
    )


def test_health_lines_go_to_stderr_and_json_to_stdout():
    results = [EndpointHealth("a:1", True, "1ms"), EndpointHealth("b:2", False, "2s", "boom")]
    assert _simple("endpoint_health", results) == (
        b"",
        b"a:1 is healthy: successfully committed proposal: took = 1ms\n"
        b"b:2 is unhealthy: failed to commit proposal: boom\n",
    )
    out = io.BytesIO()
    JsonPrinter(out, io.BytesIO()).endpoint_health(results)
    assert out.getvalue() == (
        b'[{"endpoint":"a:1","health":true,"took":"1ms"},'
        b'{"endpoint":"b:2","health":false,"took":"2s","error":"boom"}]\n'
    )


def test_json_of_no_endpoints_is_null_as_in_go():
    out = io.BytesIO()
    JsonPrinter(out, io.BytesIO()).endpoint_status([])
    assert out.getvalue() == b"null\n"


def test_get_count_only_prints_the_count():
    assert _simple("count", rpc.RangeResponse(count=42))[0] == b"42\n"


# -- lease results (the texts etcdctl 3.4 printed for these answers) --------------------------

HEADER = rpc.ResponseHeader(
    cluster_id=324952591200643719, member_id=3319814642761637952, revision=3, raft_term=2
)
FLAT_HEADER = (
    '"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":3,"raft_term":2'
)
LEASE = 0x2040A1FDDA4F2D11  # 2324035519384595729


def _outputs(method: str, *args, **kwargs) -> dict[str, tuple[bytes, bytes]]:
    """What the simple and json printers write (stdout, stderr) for one result."""
    written = {}
    for printer_type in (SimplePrinter, JsonPrinter):
        out, err = io.BytesIO(), io.BytesIO()
        getattr(printer_type(out, err), method)(*args, **kwargs)
        written[printer_type.name] = (out.getvalue(), err.getvalue())
    return written


def test_lease_grant_revoke_and_keep_alive_outputs():
    grant = rpc.LeaseGrantResponse(header=HEADER, ID=LEASE, TTL=30)
    assert _outputs("lease_grant", grant) == {
        "simple": (b"lease 2040a1fdda4f2d11 granted with TTL(30s)\n", b""),
        "json": (f'{{{FLAT_HEADER},"ID":2324035519384595729,"TTL":30,"Error":""}}\n'.encode(), b""),
    }
    revoke = rpc.LeaseRevokeResponse(header=HEADER)
    assert _outputs("lease_revoke", LEASE, revoke) == {
        "simple": (b"lease 2040a1fdda4f2d11 revoked\n", b""),
        "json": (f'{{"header":{{{FLAT_HEADER}}}}}\n'.encode(), b""),
    }
    renewed = rpc.LeaseKeepAliveResponse(header=HEADER, ID=LEASE, TTL=100)
    assert _outputs("lease_keep_alive", renewed) == {
        "simple": (b"lease 2040a1fdda4f2d11 keepalived with TTL(100)\n", b""),
        "json": (f'{{{FLAT_HEADER},"ID":2324035519384595729,"TTL":100}}\n'.encode(), b""),
    }
    # Only the simple format says that a kept-alive lease is gone.
    assert _outputs("lease_keep_alive_ended", LEASE) == {
        "simple": (b"lease 2040a1fdda4f2d11 expired or revoked.\n", b""),
        "json": (b"", b""),
    }


def test_lease_time_to_live_outputs():
    alive = rpc.LeaseTimeToLiveResponse(
        header=HEADER, ID=LEASE, TTL=99, grantedTTL=100, keys=[b"k1", b"k2"]
    )
    assert _outputs("lease_time_to_live", alive, keys=True) == {
        "simple": (
            b"lease 2040a1fdda4f2d11 granted with TTL(100s), remaining(99s), "
            b"attached keys([k1 k2])\n",
            b"",
        ),
        "json": (
            f'{{{FLAT_HEADER},"id":2324035519384595729,"ttl":99,"granted-ttl":100,'
            '"keys":["azE=","azI="]}\n'.encode(),
            b"",
        ),
    }
    bare = rpc.LeaseTimeToLiveResponse(header=HEADER, ID=LEASE, TTL=99, grantedTTL=100)
    assert _outputs("lease_time_to_live", bare, keys=True)["simple"][0].endswith(
        b"remaining(99s), attached keys([])\n"
    )
    assert _outputs("lease_time_to_live", bare, keys=False) == {
        "simple": (b"lease 2040a1fdda4f2d11 granted with TTL(100s), remaining(99s)\n", b""),
        "json": (
            f'{{{FLAT_HEADER},"id":2324035519384595729,"ttl":99,"granted-ttl":100,'
            '"keys":null}\n'.encode(),
            b"",
        ),
    }
    gone = rpc.LeaseTimeToLiveResponse(header=HEADER, ID=-1, TTL=-1)
    assert _outputs("lease_time_to_live", gone, keys=True)["simple"] == (
        b"lease -000000000000001 already expired\n",  # Go's %016x of a negative ID
        b"",
    )


def test_lease_list_outputs():
    leases = rpc.LeaseLeasesResponse(header=HEADER, leases=[rpc.LeaseStatus(ID=LEASE)])
    assert _outputs("lease_leases", leases) == {
        "simple": (b"found 1 leases\n2040a1fdda4f2d11\n", b""),
        "json": (f'{{{FLAT_HEADER},"leases":[{{"id":2324035519384595729}}]}}\n'.encode(), b""),
    }
    assert _outputs("lease_leases", rpc.LeaseLeasesResponse(header=HEADER)) == {
        "simple": (b"found 0 leases\n", b""),
        "json": (f'{{{FLAT_HEADER},"leases":[]}}\n'.encode(), b""),
    }


def test_results_a_format_cannot_show_stop_with_exit_code_4():
    table = TablePrinter(io.BytesIO(), io.BytesIO())
    for method, args in (
        ("get", (rpc.RangeResponse(),)),
        ("lease_grant", (rpc.LeaseGrantResponse(ID=1, TTL=5),)),
        ("lease_keep_alive", (rpc.LeaseKeepAliveResponse(ID=1, TTL=5),)),
    ):
        with pytest.raises(CtlError) as caught:
            getattr(table, method)(*args)
        assert (caught.value.message, caught.value.exit_code) == (
            "table not supported as output format",
            4,
        )
