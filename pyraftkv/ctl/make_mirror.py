"""make-mirror: copy a prefix of this cluster into another and keep the copy current.

As etcdctl's: the source is read at one revision in pages of 1000 keys and each key put
into the destination (under --dest-prefix, by default the same prefix; at the root with
--no-dest-prefix), then every later change is applied in one transaction per
source revision. Values are copied, leases are not. The number of keys put and deleted
so far is printed every 30 seconds. It runs until interrupted, or until a write to the
destination fails or the source's history it needs is compacted.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..client.aio import AsyncClient
from ..client.tls import TLS
from ..errors import ApiError, Compacted
from ..keys import prefix_end
from ..proto import kv_pb2
from ..proto import rpc_pb2 as rpc
from .command import command
from .errors import EXIT_BAD_ARGS, CtlError
from .flags import Flag
from .invocation import Invocation, arg_bytes

PAGE = 1000  # keys per read of the source's snapshot (etcd's mirror batch)
REPORT_EVERY_S = 30.0  # how often the count is printed, as etcdctl does

MIRROR_FLAGS = (
    Flag("prefix", "str", "", "Key-value prefix to mirror"),
    Flag(
        "dest-prefix",
        "str",
        "",
        "destination prefix to mirror a prefix to a different prefix in the destination cluster",
    ),
    Flag(
        "no-dest-prefix", "bool", False, "mirror key-values to the root of the destination cluster"
    ),
    Flag(
        "dest-cacert",
        "str",
        "",
        "Verify certificates of TLS enabled secure servers using this CA bundle",
    ),
    Flag(
        "dest-cert",
        "str",
        "",
        "Identify secure client using this TLS certificate file for the destination cluster",
    ),
    Flag("dest-key", "str", "", "Identify secure client using this TLS key file"),
    Flag(
        "dest-insecure-transport", "bool", True, "Disable transport security for client connections"
    ),
)


def _dest_tls(opts) -> TLS | None:
    """The destination's TLS, by etcdctl's rule (as for the source's global flags)."""
    if not (opts.dest_cert or opts.dest_key or opts.dest_cacert) and opts.dest_insecure_transport:
        return None
    return TLS(
        ca_file=opts.dest_cacert or None,
        cert_file=opts.dest_cert or None,
        key_file=opts.dest_key or None,
    )


class Mirror:
    """The copying itself, and the running count of keys put and deleted."""

    def __init__(self, source: AsyncClient, dest: AsyncClient, prefix: bytes, to: bytes) -> None:
        self.source, self.dest = source, dest
        self.prefix, self.to = prefix, to
        self.total = 0

    def dest_key(self, key: bytes) -> bytes:
        """The key in the destination: the first occurrence of the prefix replaced (Go's
        strings.Replace(key, prefix, dest, 1), so an empty prefix puts ``to`` in front)."""
        return key.replace(self.prefix, self.to, 1)

    async def copy_base(self) -> int:
        """Put every key of the source's prefix, as of one revision, into the destination;
        return that revision."""
        revision = (await self.source.call("Range", rpc.RangeRequest(key=b"foo"))).header.revision
        key = self.prefix or b"\0"
        end = prefix_end(self.prefix) if self.prefix else b"\0"
        while True:
            request = rpc.RangeRequest(key=key, range_end=end, limit=PAGE, revision=revision)
            page = await self.source.call("Range", request)
            for kv in page.kvs:
                await self.dest.call(
                    "Put", rpc.PutRequest(key=self.dest_key(kv.key), value=kv.value)
                )
                self.total += 1
            if not page.more or not page.kvs:
                return revision
            key = page.kvs[-1].key + b"\0"

    async def follow(self, revision: int) -> None:
        """Apply every change after ``revision``, one transaction per source revision."""
        watcher = await self.source.watch(self.prefix, prefix=True, start_revision=revision + 1)
        try:
            async for events in watcher.batches():
                ops: list[rpc.RequestOp] = []
                last = 0
                for event in events:
                    if last and event.kv.mod_revision > last:
                        await self._commit(ops)
                        ops = []
                    last = event.kv.mod_revision
                    ops.append(self._op(event))
                    self.total += 1
                if ops:
                    await self._commit(ops)
        finally:
            await watcher.cancel()

    def _op(self, event: kv_pb2.Event) -> rpc.RequestOp:
        key = self.dest_key(event.kv.key)
        if event.type == kv_pb2.Event.DELETE:
            return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))
        return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=event.kv.value))

    async def _commit(self, ops: list[rpc.RequestOp]) -> None:
        await self.dest.call("Txn", rpc.TxnRequest(success=ops))

    async def report(self, inv: Invocation) -> None:
        """Print the count every REPORT_EVERY_S seconds."""
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            inv.write(str(self.total))
            inv.stdout.flush()


@command(
    "make-mirror",
    summary="Makes a mirror at the destination etcd cluster",
    usage="[options] <destination>",
    flags=MIRROR_FLAGS,
    description="""Copies the key-values under --prefix (every key when it is empty) into the
cluster at <destination>, under --dest-prefix (by default the same prefix; at the root with
--no-dest-prefix), then applies every later change, one transaction per revision. Values
are copied, leases are not. Prints the number of keys put and deleted every 30 seconds;
runs until interrupted.""",
)
async def make_mirror(inv: Invocation) -> None:
    """Mirror --prefix into the cluster at <destination> until interrupted."""
    if len(inv.args) != 1:
        raise CtlError("make-mirror takes one destination argument", EXIT_BAD_ARGS)
    opts = inv.opts
    if opts.no_dest_prefix and opts.dest_prefix:
        raise CtlError(
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
            EXIT_BAD_ARGS,
        )
    prefix = arg_bytes(opts.prefix)
    to = b"" if opts.no_dest_prefix else arg_bytes(opts.dest_prefix or opts.prefix)
    source = await inv.client()
    dest = AsyncClient(
        [inv.args[0]],
        timeout=inv.settings.command_timeout,
        connect_timeout=inv.settings.dial_timeout,
        tls=_dest_tls(opts) or False,
    )
    mirror = Mirror(source, dest, prefix, to)
    reporter = asyncio.ensure_future(mirror.report(inv))
    try:
        await mirror.follow(await mirror.copy_base())
    except Compacted:
        raise CtlError("etcdserver: mvcc: required revision has been compacted") from None
    except ApiError as exc:
        raise CtlError(exc.message) from None
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        await dest.close()
