"""snapshot save / status / restore: back a member's store up to a file, describe such a
file, and make the data dirs of a new cluster from it (etcdctl's snapshot commands).

``save`` asks one member for a consistent copy of its store, checks it against the SHA-256
the member sends with it, and writes it whole. ``restore`` turns the file into one new
member's data dir; run it once per member of the new cluster with the same
--initial-cluster and --initial-cluster-token, then start each member with those flags.
"""

from __future__ import annotations

import json

from ..admin.backup import restore as restore_data_dir
from ..admin.backup import status as backup_status
from ..admin.cluster import parse_urls, plan_cluster
from ..errors import ConfigError
from .command import NO_PROTOBUF, RESPONSE_FORMATS, command, group
from .errors import EXIT_BAD_ARGS, EXIT_ERROR, EXIT_INTERRUPTED, CtlError
from .flags import Flag
from .gotext import humanize_bytes
from .invocation import Invocation
from .table import render_table

group("snapshot", "Saves, describes and restores backups of a member's store")

# Defaults as the server's, so a restore without flags makes the data dir that a plain
# `pyraftkv` (a single member on loopback) starts from.
RESTORE_FLAGS = (
    Flag("data-dir", "str", "", "Path to the data directory (default: <name>.pyraftkv)"),
    Flag("name", "str", "default", "Human-readable name for this member"),
    Flag(
        "initial-cluster",
        "str",
        "",
        "Initial cluster configuration for restore bootstrap "
        "(default: <name>=<initial-advertise-peer-urls>)",
    ),
    Flag("initial-cluster-token", "str", "pyraftkv-cluster", "Initial cluster token"),
    Flag(
        "initial-advertise-peer-urls",
        "str",
        "http://127.0.0.1:2380",
        "List of this member's peer URLs to advertise to the rest of the cluster",
    ),
)


@command(
    "snapshot",
    "save",
    summary="Stores a snapshot to a given file",
    usage="<filename>",
    formats=RESPONSE_FORMATS,  # its one line, whatever the format, as etcdctl's
    description="""Saves a consistent copy of one member's store to <filename>: the member
named by --endpoints, which must name exactly one.""",
)
async def save(inv: Invocation) -> None:
    if len(inv.args) != 1:
        raise CtlError("snapshot save expects one argument", EXIT_BAD_ARGS)
    if len(inv.settings.endpoints) != 1:
        raise CtlError(
            "snapshot must be requested to one selected node, not multiple "
            f"[{' '.join(inv.settings.endpoints)}]",
            EXIT_INTERRUPTED,  # etcdctl's code for every failed save
        )
    client = await inv.client()
    await client.snapshot(inv.args[0])
    inv.write(f"Snapshot saved at {inv.args[0]}")


@command(
    "snapshot",
    "restore",
    summary="Restores a snapshot into a new data directory",
    usage="<filename> [options]",
    flags=RESTORE_FLAGS,
    description="""Makes a new member's data directory from a snapshot file. Restore every
member of the new cluster from the same file, with the same --initial-cluster and
--initial-cluster-token, then start each with those flags (--initial-cluster-state new).""",
)
async def restore(inv: Invocation) -> None:
    if len(inv.args) != 1:
        raise CtlError("snapshot restore requires exactly one argument", EXIT_BAD_ARGS)
    opts = inv.opts
    try:
        config = plan_cluster(
            opts.name,
            opts.initial_cluster,
            opts.initial_cluster_token,
            parse_urls(opts.initial_advertise_peer_urls, "--initial-advertise-peer-urls"),
            opts.data_dir,
        )
        revision, index = restore_data_dir(inv.args[0], config)
    except ConfigError as exc:
        raise CtlError(str(exc), EXIT_ERROR) from None
    inv.write(
        f"restored snapshot {inv.args[0]} (revision {revision}, raft index {index}) into "
        f"{config.data_dir} as member {config.member_id:x} of cluster {config.cluster_id:x}"
    )


@command(
    "snapshot",
    "status",
    summary="Gets backend snapshot status of a given file",
    usage="<filename>",
    formats=NO_PROTOBUF,
    description="""Prints the hash, revision, total keys (revision records) and size of a
snapshot file.""",
)
async def status(inv: Invocation) -> None:
    if len(inv.args) != 1:
        raise CtlError("snapshot status requires exactly one argument", EXIT_BAD_ARGS)
    try:
        found = backup_status(inv.args[0])
    except ConfigError as exc:
        raise CtlError(str(exc), EXIT_ERROR) from None
    size = humanize_bytes(found.total_size)
    row = [f"{found.hash:x}", str(found.revision), str(found.total_keys), size]
    if inv.settings.write_out == "json":
        fields = {
            "hash": found.hash,
            "revision": found.revision,
            "totalKey": found.total_keys,
            "totalSize": found.total_size,
        }
        inv.write(json.dumps(fields, separators=(",", ":")))
    elif inv.settings.write_out == "fields":
        inv.write(f'"Hash" : {found.hash}\n"Revision" : {found.revision}')
        inv.write(f'"Keys" : {found.total_keys}\n"Size" : {found.total_size}')
    elif inv.settings.write_out == "table":
        header = ("HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE")
        inv.stdout.write(render_table(header, [row]).encode())
    else:
        inv.write(", ".join(row))
