"""pyraftkvctl's flag parsing, request building and txn grammar, with bad input.

Every command line here either is parsed by a pure function or fails before any
connection; the endpoint given is a closed port, so a command that wrongly tried to
reach a server would fail with a different (connection) error.
"""

from __future__ import annotations

import io
import time

import pytest

from pyraftkv.ctl import run
from pyraftkv.ctl.errors import CtlError
from pyraftkv.ctl.flags import Flag, UsageError, go_parse_int, parse_duration, parse_flags
from pyraftkv.ctl.kv import DEL_FLAGS, GET_FLAGS, PUT_FLAGS, build_delete, build_put, build_range
from pyraftkv.ctl.txn import parse_compare, parse_go_string, parse_request, read_txn, split_words
from pyraftkv.proto import rpc_pb2 as rpc

from .e2e.harness import free_ports

FLAGS = (
    Flag("rev", "int", 0, "revision"),
    Flag("prefix", "bool", False, "prefix"),
    Flag("write-out", "str", "simple", "format", short="w"),
    Flag("interactive", "bool", False, "interactive", short="i"),
    Flag("timeout", "duration", 5.0, "timeout"),
    Flag("endpoints", "strings", ("127.0.0.1:2379",), "endpoints"),
)


@pytest.fixture(scope="module")
def closed_port() -> int:
    return free_ports(1)[0]  # nothing listens there


def ctl(closed_port: int, *argv: str, stdin: bytes = b"", environ=None) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    code = run(
        [f"--endpoints=127.0.0.1:{closed_port}", *argv], io.BytesIO(stdin), out, err, environ or {}
    )
    return code, out.getvalue().decode(), err.getvalue().decode()


# -- flags ------------------------------------------------------------------------------------


def test_flags_in_every_spelling():
    parsed = parse_flags(FLAGS, ["a", "--rev=5", "b", "--prefix", "-w", "json", "-i", "c"])
    assert parsed.args == ["a", "b", "c"]
    assert (parsed.values.rev, parsed.values.prefix, parsed.values.write_out) == (5, True, "json")
    assert parsed.values.interactive is True
    assert parse_flags(FLAGS, ["--rev", "0x10", "-wtable"]).values.rev == 16
    assert parse_flags(FLAGS, ["-w=json", "--prefix=false"]).values.prefix is False
    assert parse_flags(FLAGS, ["-w=json"]).values.write_out == "json"
    assert parse_flags(FLAGS, []).values.rev == 0
    assert parse_flags(FLAGS, ["--rev=1", "--rev=2"]).values.rev == 2


def test_double_dash_ends_flags_and_is_remembered():
    parsed = parse_flags(FLAGS, ["key", "--prefix", "--", "cmd", "--rev", "-"])
    assert parsed.args == ["key", "cmd", "--rev", "-"]
    assert parsed.dash_at == 1
    assert parse_flags(FLAGS, ["-", "x"]).args == ["-", "x"]
    assert parse_flags(FLAGS, ["x"]).dash_at is None


def test_list_flags_split_on_commas_and_add_up():
    assert parse_flags(FLAGS, []).values.endpoints == ("127.0.0.1:2379",)
    parsed = parse_flags(FLAGS, ["--endpoints=a:1,b:2", "--endpoints", "c:3"])
    assert parsed.values.endpoints == ["a:1", "b:2", "c:3"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bogus"], "unknown flag: --bogus"),
        (["--bogus=1"], "unknown flag: --bogus"),
        (["-x"], "unknown shorthand flag: 'x' in -x"),
        (["-ix"], "unknown shorthand flag: 'x' in -ix"),
        (["--rev"], "flag needs an argument: --rev"),
        (["-w"], "flag needs an argument: 'w' in -w"),
        (
            ["--rev=abc"],
            'invalid argument "abc" for "--rev" flag: strconv.ParseInt: parsing "abc": '
            "invalid syntax",
        ),
        (
            ["--rev", "1_"],
            'invalid argument "1_" for "--rev" flag: strconv.ParseInt: parsing "1_": '
            "invalid syntax",
        ),
        (
            ["--rev", "99999999999999999999"],
            'invalid argument "99999999999999999999" for "--rev" flag: strconv.ParseInt: '
            'parsing "99999999999999999999": value out of range',
        ),
        (
            ["--prefix=yes"],
            'invalid argument "yes" for "--prefix" flag: strconv.ParseBool: parsing "yes": '
            "invalid syntax",
        ),
        (
            ["--timeout=5"],
            'invalid argument "5" for "--timeout" flag: time: invalid duration "5"',
        ),
    ],
)
def test_bad_flags_are_reported(argv, message):
    with pytest.raises(UsageError) as caught:
        parse_flags(FLAGS, argv)
    assert caught.value.message == message
    assert caught.value.exit_code == 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("1m30s", 90.0), ("250ms", 0.25), ("1.5h", 5400.0), ("0", 0.0), ("2us", 2e-6)],
)
def test_go_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "5x", "1m30", "-"])
def test_bad_go_durations(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# -- building requests ------------------------------------------------------------------------


def _get(*argv: str) -> rpc.RangeRequest:
    parsed = parse_flags(GET_FLAGS, argv)
    return build_range(parsed.values, parsed.args)


def test_get_builds_etcds_ranges():
    assert _get("k") == rpc.RangeRequest(key=b"k")
    assert _get("a", "c") == rpc.RangeRequest(key=b"a", range_end=b"c")
    assert _get("ab", "--prefix") == rpc.RangeRequest(key=b"ab", range_end=b"ac")
    # A raw 0xff byte on the command line (Python keeps it as a surrogate) stays one byte.
    assert _get("a\udcff", "--prefix") == rpc.RangeRequest(key=b"a\xff", range_end=b"b")
    assert _get("", "--prefix") == rpc.RangeRequest(key=b"\0", range_end=b"\0")
    assert _get("k", "--from-key") == rpc.RangeRequest(key=b"k", range_end=b"\0")
    assert _get("", "--from-key") == rpc.RangeRequest(key=b"\0", range_end=b"\0")


def test_get_options_reach_the_request():
    request = _get("k", "--rev=7", "--limit=3", "--keys-only", "--consistency=s")
    assert (request.revision, request.limit, request.keys_only, request.serializable) == (
        7, 3, True, True,
    )  # fmt: skip
    assert _get("k", "--count-only").count_only
    sort = _get("k", "--sort-by=modify", "--order=DESCEND")
    assert (sort.sort_target, sort.sort_order) == (rpc.RangeRequest.MOD, rpc.RangeRequest.DESCEND)
    assert _get("k", "--sort-by=VALUE").sort_order == rpc.RangeRequest.NONE
    # Ascending by key is what the server does anyway: no sort asked.
    assert _get("k", "--sort-by=KEY", "--order=ASCEND").sort_order == rpc.RangeRequest.NONE


def test_put_and_del_build_their_requests():
    parsed = parse_flags(PUT_FLAGS, ["k", "v", "--lease=1f", "--prev-kv", "--ignore-lease"])
    request = build_put(parsed.values, parsed.args, None)
    assert request == rpc.PutRequest(
        key=b"k", value=b"v", lease=31, prev_kv=True, ignore_lease=True
    )
    parsed = parse_flags(PUT_FLAGS, ["k"])
    assert build_put(parsed.values, parsed.args, io.BytesIO(b"from\nstdin\n")).value == (
        b"from\nstdin\n"
    )
    parsed = parse_flags(PUT_FLAGS, ["k", "--ignore-value"])
    assert build_put(parsed.values, parsed.args, io.BytesIO(b"unread")).ignore_value
    parsed = parse_flags(DEL_FLAGS, ["p", "--prefix", "--prev-kv"])
    assert build_delete(parsed.values, parsed.args) == rpc.DeleteRangeRequest(
        key=b"p", range_end=b"q", prev_kv=True
    )


# -- bad command lines: exact message and exit code, nothing sent ----------------------------

BAD_COMMAND_LINES = [
    (["get"], 128, "get command needs one argument as key and an optional argument as range_end"),
    (["get", "a", "b", "c"], 128,
     "get command needs one argument as key and an optional argument as range_end"),
    (["get", "a", "--sort-by=SIZE"], 4, "bad sort target SIZE"),
    (["get", "a", "--order=UP"], 4, "bad sort order UP"),
    (["get", "a", "--consistency=x"], 4, 'unknown consistency flag "x"'),
    (["get", "a", "--prefix", "--from-key"], 128,
     "`--prefix` and `--from-key` cannot be set at the same time, choose one"),
    (["get", "a", "b", "--prefix"], 128,
     "too many arguments, only accept one argument when `--prefix` or `--from-key` is set"),
    (["get", "a", "--keys-only", "--count-only"], 128,
     "`--keys-only` and `--count-only` cannot be set at the same time, choose one"),
    (["del"], 128, "del command needs one argument as key and an optional argument as range_end"),
    (["put"], 128, "put command needs 1 argument and input from stdin or 2 arguments"),
    (["put", "k"], 128, "put command needs 1 argument and input from stdin or 2 arguments"),
    (["put", "k", "v", "--ignore-value"], 128,
     "put command needs only 1 argument when 'ignore-value' is set"),
    (["put", "k", "v", "--lease=zz"], 128,
     'bad lease ID (strconv.ParseInt: parsing "zz": invalid syntax), expecting ID in Hex'),
    (["compaction"], 128, "compaction command needs 1 argument"),
    (["compaction", "1e3"], 1, 'strconv.ParseInt: parsing "1e3": invalid syntax'),
    (["txn", "x"], 128, "txn command does not accept argument"),
    (["watch"], 128,
     "watch command needs one argument as key and an optional argument as range_end"),
    (["watch", "a", "b", "--prefix"], 128, "`range_end` and `--prefix` are mutually exclusive"),
    (["watch", "a", "--"], 128, "no command given after '--'"),
    (["member", "add", "n"], 128, "member peer urls not provided"),
    (["member", "add", "n", "--peer-urls=ftp://h:1"], 1,
     "URL scheme must be http, https, unix, or unixs: ftp://h:1"),
    (["member", "add", "n", "--peer-urls=http://h"], 1,
     'URL address does not have the form "host:port": http://h'),
    (["member", "add", "n", "--peer-urls=http://h:1/x"], 1, "URL must not contain a path: http://h:1/x"),
    (["member", "remove"], 128, "member ID is not provided"),
    (["member", "remove", "xyz"], 128,
     'bad member ID arg (strconv.ParseUint: parsing "xyz": invalid syntax), expecting ID in Hex'),
    (["member", "promote", "1", "2"], 128, "member ID is not provided"),
    (["move-leader"], 128, "move-leader command needs 1 argument"),
    (["lease", "grant"], 128, "lease grant command needs TTL argument"),
    (["lease", "grant", "1s"], 128, 'bad TTL (strconv.ParseInt: parsing "1s": invalid syntax)'),
    (["lease", "revoke", "1", "2"], 128, "lease revoke command needs 1 argument"),
    (["lease", "revoke", "0x1"], 128,
     'bad lease ID arg (strconv.ParseInt: parsing "0x1": invalid syntax), expecting ID in Hex'),
    (["lease", "timetolive"], 128, "lease timetolive command needs lease ID as argument"),
    (["lease", "keep-alive", "--once"], 128, "lease keep-alive command needs lease ID as argument"),
    (["-w", "table", "lease", "grant", "5"], 4, "table not supported as output format"),
    (["lock"], 128, "lock takes a lock name argument and an optional command to execute"),
    (["elect"], 128,
     "elect takes one election name argument and an optional proposal argument"),
    (["elect", "name"], 128, "no proposal argument but -l not set"),
    (["elect", "--listen", "name", "proposal"], 128, "proposal given but -l is set"),
    (["-w", "xml", "get", "a"], 4, "unsupported output format"),
    (["-w", "table", "put", "a", "b"], 4, "table not supported as output format"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "code", "message"), BAD_COMMAND_LINES, ids=[" ".join(c[0]) for c in BAD_COMMAND_LINES]
)
def test_bad_command_lines(closed_port, argv, code, message):
    assert ctl(closed_port, *argv) == (code, "", f"Error: {message}\n")


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["lease", "grant", "5"], 1),
        (["lease", "revoke", "1"], 1),
        (["lease", "timetolive", "1"], 2),
        (["lease", "list"], 2),
        (["lease", "keep-alive", "--once", "1"], 2),
        (["lock", "name"], 1),
        (["elect", "name", "proposal"], 1),
    ],
)
def test_unreachable_cluster_exit_codes_are_etcdctls(closed_port, argv, code):
    got, out, err = ctl(closed_port, "--command-timeout=0.2s", *argv)
    assert (got, out) == (code, "")
    assert err.startswith("Error: ") and f"127.0.0.1:{closed_port}" in err
    # (etcdctl waits forever for timetolive, list, keep-alive --once, lock and elect.)


def test_keep_alive_gives_up_on_an_unreachable_cluster_as_etcdctl_does(closed_port):
    # No renewal within the dial timeout and a second: the lease counts as gone.
    started = time.monotonic()
    assert ctl(closed_port, "--dial-timeout=0.2s", "lease", "keep-alive", "1f") == (
        0,
        "lease 000000000000001f expired or revoked.\n",
        "",
    )
    assert 1.1 < time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("text", "base", "value"),
    [  # each checked against etcdctl 3.4 (a --limit flag, or a lease ID)
        ("1_0", 0, 10),
        ("0x_10", 0, 16),
        ("010", 0, 8),
        ("0_10", 0, 8),
        ("0o10", 0, 8),
        ("0b_1", 0, 1),
        ("-0x10", 0, -16),
        ("+5", 10, 5),
        ("-9223372036854775808", 10, -(2**63)),
        ("7fffffffffffffff", 16, 2**63 - 1),
        ("-1", 16, -1),
    ],
)
def test_go_integers(text, base, value):
    assert go_parse_int(text, base) == value


@pytest.mark.parametrize(
    ("text", "base", "unsigned", "error"),
    [
        ("_1", 0, False, "invalid syntax"),
        ("1_", 0, False, "invalid syntax"),
        ("0x", 0, False, "invalid syntax"),
        ("08", 0, False, "invalid syntax"),
        ("1_0", 10, False, "invalid syntax"),
        ("0x10", 16, False, "invalid syntax"),
        ("", 10, False, "invalid syntax"),
        ("9223372036854775808", 10, False, "value out of range"),
        ("8000000000000000", 16, False, "value out of range"),
        ("+1", 16, True, "invalid syntax"),
        ("1ffffffffffffffff", 16, True, "value out of range"),
    ],
)
def test_go_integer_errors(text, base, unsigned, error):
    func = "ParseUint" if unsigned else "ParseInt"
    with pytest.raises(ValueError) as caught:
        go_parse_int(text, base, unsigned=unsigned)
    assert str(caught.value) == f'strconv.{func}: parsing "{text}": {error}'


@pytest.mark.parametrize(
    ("argv", "message", "help_of"),
    [
        (["get", "a", "--bogus"], "unknown flag: --bogus", "pyraftkvctl get"),
        (["member", "list", "-q"], "unknown shorthand flag: 'q' in -q", "pyraftkvctl member list"),
        (["frobnicate"], 'unknown command "frobnicate" for "pyraftkvctl"', "pyraftkvctl"),
        (["member", "frob"], 'unknown command "frob" for "pyraftkvctl member"',
         "pyraftkvctl member"),
        (["--bogus", "get", "a"], "unknown flag: --bogus", "pyraftkvctl get"),
        (["get", "a", "--rev=x"],
         'invalid argument "x" for "--rev" flag: strconv.ParseInt: parsing "x": invalid syntax',
         "pyraftkvctl get"),
        (["--dial-timeout=soon", "get", "a"],
         'invalid argument "soon" for "--dial-timeout" flag: time: invalid duration "soon"',
         "pyraftkvctl get"),
    ],
)  # fmt: skip
def test_usage_errors_point_to_help(closed_port, argv, message, help_of):
    assert ctl(closed_port, *argv) == (
        1,
        "",
        f"Error: {message}\nRun '{help_of} --help' for usage.\n",
    )


def test_bad_environment_values_name_the_variable(closed_port):
    out, err = io.BytesIO(), io.BytesIO()
    code = run(["get", "a"], io.BytesIO(), out, err, {"PYRAFTKVCTL_COMMAND_TIMEOUT": "x"})
    assert (code, err.getvalue()) == (
        1,
        b'Error: PYRAFTKVCTL_COMMAND_TIMEOUT: invalid argument "x" for "--command-timeout" '
        b'flag: time: invalid duration "x"\n',
    )


def test_endpoints_come_from_flags_then_pyraftkvctl_then_etcdctl_variables(closed_port):
    def tried(argv, environ) -> str:
        out, err = io.BytesIO(), io.BytesIO()
        assert run(argv, io.BytesIO(), out, err, environ) == 1
        return err.getvalue().decode().split(":")[1].split()[-1]  # "cannot connect to HOST"

    ours, theirs = f"127.0.0.1:{closed_port}", "127.0.0.2:1"
    assert tried(["get", "a"], {"ETCDCTL_ENDPOINTS": ours}) == "127.0.0.1"
    both = {"PYRAFTKVCTL_ENDPOINTS": ours, "ETCDCTL_ENDPOINTS": theirs}
    assert tried(["get", "a"], both) == "127.0.0.1"
    flag = {"PYRAFTKVCTL_ENDPOINTS": theirs}
    assert tried([f"--endpoints={ours}", "get", "a"], flag) == "127.0.0.1"


def test_http_endpoints_are_accepted_and_bad_ones_refused(closed_port):
    out, err = io.BytesIO(), io.BytesIO()
    assert (
        run([f"--endpoints=http://127.0.0.1:{closed_port}/", "get", "a"], None, out, err, {}) == 1
    )
    assert err.getvalue().startswith(f"Error: cannot connect to 127.0.0.1:{closed_port}: ".encode())
    err = io.BytesIO()
    assert run(["--endpoints=nohost", "get", "a"], None, out, err, {}) == 128
    assert err.getvalue() == b"Error: endpoint 'nohost' is not host:port\n"


# -- txn grammar --------------------------------------------------------------------------------


def test_go_strings():
    assert parse_go_string('"a\\"b" rest', 0) == (b'a"b', 6)
    assert parse_go_string('"\\x00\\xff\\n\\t\\\\"', 0)[0] == b"\x00\xff\n\t\\"
    assert parse_go_string('"\\u00fc\\U0001F600\\101"', 0)[0] == "ü😀A".encode()
    assert parse_go_string('"ü"', 0)[0] == "ü".encode()
    assert parse_go_string("`raw \\n`", 0) == (b"raw \\n", 8)
    for bad in ('"open', '"\\q"', '"\\x1"', "nope", '"\\ud800"', "`open"):
        with pytest.raises(ValueError):
            parse_go_string(bad, 0)


def test_request_lines_split_like_a_shell():
    assert split_words("put k 'two words'") == ["put", "k", "two words"]
    assert split_words('put k "a \\"quoted\\" word"  ') == ["put", "k", 'a "quoted" word']
    assert split_words("  get   k --prefix") == ["get", "k", "--prefix"]
    with pytest.raises(ValueError):
        split_words("put k 'open")
    with pytest.raises(ValueError):
        split_words('put k "a"b')


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('mod("k") > "5"', rpc.Compare(result=rpc.Compare.GREATER, target=rpc.Compare.MOD, key=b"k",
                                      mod_revision=5)),
        ('m("k")<"5"', rpc.Compare(result=rpc.Compare.LESS, target=rpc.Compare.MOD, key=b"k",
                                  mod_revision=5)),
        ('val("k") = "v w"', rpc.Compare(target=rpc.Compare.VALUE, key=b"k", value=b"v w")),
        ('value("k\\x00") != ""', rpc.Compare(result=rpc.Compare.NOT_EQUAL,
                                              target=rpc.Compare.VALUE, key=b"k\0", value=b"")),
        ('ver("k") = "0"', rpc.Compare(target=rpc.Compare.VERSION, key=b"k", version=0)),
        ('version("k") > "-1"', rpc.Compare(result=rpc.Compare.GREATER,
                                            target=rpc.Compare.VERSION, key=b"k", version=-1)),
        ('c("k") < "9"', rpc.Compare(result=rpc.Compare.LESS, target=rpc.Compare.CREATE, key=b"k",
                                    create_revision=9)),
        ('create(`k`) = `3`', rpc.Compare(target=rpc.Compare.CREATE, key=b"k", create_revision=3)),
        ('lease("k") = "1f"', rpc.Compare(target=rpc.Compare.LEASE, key=b"k", lease=31)),
    ],
)  # fmt: skip
def test_compares(line, expected):
    assert parse_compare(line) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("bogus", "malformed comparison: bogus"),
        ('foo("k") > "1"', 'malformed comparison: foo("k") > "1" (unknown target foo)'),
        ('mod(k) > "1"', 'malformed comparison: mod(k) > "1" (key: expected a quoted string)'),
        ('mod("k) > "1"', 'malformed comparison: mod("k) > "1" (expected ") <operator> "value"")'),
        ('mod("k") >= "1"', 'malformed comparison: mod("k") >= "1" (unknown operator >=)'),
        ('mod("k") == "1"', 'malformed comparison: mod("k") == "1" (unknown operator ==)'),
        ('mod("k") > 1', 'malformed comparison: mod("k") > 1 (value: expected a quoted string)'),
        ('mod("k") > "1" and more',
         'malformed comparison: mod("k") > "1" and more '
         "(unexpected text after the value: and more)"),
        ('mod("k") > "x"',
         'invalid txn compare request: mod("k") > "x" '
         '(strconv.ParseInt: parsing "x": invalid syntax)'),
        ('lease("k") = "xyz"',
         'invalid txn compare request: lease("k") = "xyz" '
         '(strconv.ParseInt: parsing "xyz": invalid syntax)'),
    ],
)  # fmt: skip
def test_malformed_compares(line, message):
    with pytest.raises(CtlError) as caught:
        parse_compare(line)
    assert (caught.value.message, caught.value.exit_code) == (message, 3)


def test_request_lines():
    assert parse_request("put k 'v w' --prev-kv") == rpc.RequestOp(
        request_put=rpc.PutRequest(key=b"k", value=b"v w", prev_kv=True)
    )
    assert parse_request("get k --prefix --limit=2") == rpc.RequestOp(
        request_range=rpc.RangeRequest(key=b"k", range_end=b"l", limit=2)
    )
    assert parse_request("del a c") == rpc.RequestOp(
        request_delete_range=rpc.DeleteRangeRequest(key=b"a", range_end=b"c")
    )
    assert parse_request('put "k\\x01" -- -v').request_put.value == b"-v"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("bogus k v", "invalid txn request: bogus k v"),
        ("delete k", "invalid txn request: delete k"),
        ("put", "invalid txn request: put"),
        ("put k",
         "invalid txn request: put k (put command needs 1 argument and input from stdin or 2 "
         "arguments)"),
        ("get k --bogus", "invalid txn request: get k --bogus (unknown flag: --bogus)"),
        ("get k --sort-by=x", "invalid txn request: get k --sort-by=x (bad sort target x)"),
        ("put k 'v", "invalid txn request: put k 'v (unterminated single-quoted string)"),
    ],
)  # fmt: skip
def test_malformed_request_lines(line, message):
    with pytest.raises(CtlError) as caught:
        parse_request(line)
    assert (caught.value.message, caught.value.exit_code) == (message, 3)


def test_txn_sections_end_at_blank_lines_or_the_end_of_input():
    prompts = []
    request = read_txn(
        io.BytesIO(b'  mod("a") > "0"  \nval("b") = "x"\n\nput a 1\n  \nget a\ndel b'),
        prompts.append,
    )
    assert [c.key for c in request.compare] == [b"a", b"b"]
    assert [op.WhichOneof("request") for op in request.success] == ["request_put"]
    assert [op.WhichOneof("request") for op in request.failure] == [
        "request_range",
        "request_delete_range",
    ]
    assert prompts == [
        "compares:",
        "success requests (get, put, del):",
        "failure requests (get, put, del):",
    ]
    assert read_txn(io.BytesIO(b"")) == rpc.TxnRequest()


def test_bad_txn_input_stops_before_connecting(closed_port):
    assert ctl(closed_port, "txn", stdin=b'mod("k") >= "1"\n\n\n') == (
        3,
        "",
        'Error: malformed comparison: mod("k") >= "1" (unknown operator >=)\n',
    )
    code, out, err = ctl(closed_port, "txn", "-i", stdin=b"\nput k\n\n")
    assert (code, out) == (3, "compares:\nsuccess requests (get, put, del):\n")
    assert err.startswith("Error: invalid txn request: put k (")
