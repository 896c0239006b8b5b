"""pyraftkv's Raft consensus core: a pure, deterministic, sans-I/O state machine.

The Raft process owns one RaftCore: it feeds ticks, peer messages and requests in, takes
Ready batches out, persists them by the rule in ready.py and calls advance(). One turn of
the shell's loop, in outline:

    core.tick() / core.step(decode_message(frame)) / core.propose(batch) / ...
    while core.has_ready():
        ready = core.ready()
        send(ready.messages)                      # at once, even before the fsync
        app.apply(ready.committed_entries); app.answer(ready.read_states)
        wal.write(ready.snapshot, ready.entries, ready.hard_state, sync=ready.must_sync)
        core.advance(ready)                       # after the write is durable ...
        send(ready.persisted_messages)            # ... and only then these
"""

from .codec import (
    decode_conf_change,
    decode_hard_state,
    decode_message,
    decode_snapshot_meta,
    encode_conf_change,
    encode_hard_state,
    encode_message,
    encode_snapshot_meta,
)
from .core import CAMPAIGN_TRANSFER, Config, RaftCore, Status
from .errors import (
    CodecError,
    ConfChangeInProgress,
    ConfChangeRejected,
    LeaderTransferInProgress,
    NoLeaderError,
    NotLeaderError,
    ProposalRefused,
    RaftError,
    RestoreError,
    TooManyUncommitted,
)
from .progress import ProgressState
from .ready import Ready
from .types import (
    EMPTY_MEMBERSHIP,
    EMPTY_SNAPSHOT,
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Membership,
    Message,
    MessageType,
    ReadState,
    Role,
    SnapshotMeta,
    SoftState,
)

__all__ = [
    "CAMPAIGN_TRANSFER",
    "EMPTY_MEMBERSHIP",
    "EMPTY_SNAPSHOT",
    "CodecError",
    "Config",
    "ConfChange",
    "ConfChangeInProgress",
    "ConfChangeRejected",
    "ConfChangeType",
    "Entry",
    "EntryType",
    "HardState",
    "LeaderTransferInProgress",
    "Membership",
    "Message",
    "MessageType",
    "NoLeaderError",
    "NotLeaderError",
    "ProgressState",
    "ProposalRefused",
    "RaftCore",
    "RaftError",
    "ReadState",
    "Ready",
    "RestoreError",
    "Role",
    "SnapshotMeta",
    "SoftState",
    "Status",
    "TooManyUncommitted",
    "decode_conf_change",
    "decode_hard_state",
    "decode_message",
    "decode_snapshot_meta",
    "encode_conf_change",
    "encode_hard_state",
    "encode_message",
    "encode_snapshot_meta",
]
