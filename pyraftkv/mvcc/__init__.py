"""etcd v3's revisioned key-value store (MVCC) on the C key index and LMDB.

store.MVCCStore is the entry point; batch.WriteBatch applies committed requests;
reads.ReadView serves Range and Txn compares; validation holds the request checks;
ranges the range_end rules; records the LMDB layout.
"""

from pyraftkv.mvcc.batch import WriteBatch
from pyraftkv.mvcc.ranges import KeyRange, key_range, prefix_end
from pyraftkv.mvcc.store import MVCCStore

__all__ = ["KeyRange", "MVCCStore", "WriteBatch", "key_range", "prefix_end"]
