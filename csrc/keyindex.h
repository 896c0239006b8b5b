/*
 * Revisioned key index: an in-memory B+tree from key bytes to the key's revision
 * history, the way etcd's keyIndex keeps it.
 *
 * A revision is (main, sub): main is the store revision (one per write transaction),
 * sub orders the writes inside it. A key's history is a list of generations; a
 * generation starts with a put (its created revision), counts versions (1 on create,
 * +1 per put, the closing tombstone counts too) and ends with a tombstone. A key is
 * live at revision R when its newest revision with main <= R is a put.
 *
 * Layout: leaves hold up to 64 (8-byte key window, entry pointer) slots; inner nodes
 * route on separator pointers to entries in their right subtree, so no key bytes are
 * copied into the tree. Each key is one allocation: header, key bytes, generations,
 * revisions. Memory for a 16-byte key with one revision: an 80-byte allocation (72
 * bytes asked plus malloc's header) and about 23 bytes of leaf slot at the ~70% fill
 * random inserts give: measured 104 bytes per key (RSS growth over 1M keys; see
 * bench/README.md). Each further revision of a key adds 16 bytes, each generation 24.
 *
 * Every function returns 0, a documented positive code, or a negative errno:
 *   -EINVAL  a revision not newer than the key's newest, or an inconsistent restore
 *   -ERANGE  main < 0, sub outside [0, 2^62), or a key longer than 4 GiB
 *   -ENOMEM  out of memory; the index is unchanged
 *   -EIO     the index was left inconsistent by an earlier failure (cannot happen
 *            unless an allocation the compaction proved unnecessary fails)
 * Result buffers returned by ki_range and ki_compact belong to the index and stay
 * valid until the next call on it. An index is not thread-safe.
 */
#ifndef PYRAFTKV_KEYINDEX_H
#define PYRAFTKV_KEYINDEX_H

#include <stddef.h>
#include <stdint.h>

/* The key has no live generation at the asked revision (get, tombstone). */
#define KI_NOT_LIVE 1
/* Integers per item in ki_range's numbers: key offset, key length, mod main,
 * mod sub, create revision, version. */
#define KI_RANGE_FIELDS 6
/* Integers per item in ki_compact's output: main, sub, is-tombstone. */
#define KI_COMPACT_FIELDS 3

typedef struct ki_index ki_index;

/* Creates an empty index in *out. */
int ki_new(ki_index **out);
/* Frees the index and everything it holds; NULL is a no-op. */
void ki_free(ki_index *idx);

/* Records a put of key at (main, sub); out[0] = create revision, out[1] = version
 * of the key after the put, out[2], out[3] = the revision it replaced (main, sub), or
 * -1, -1 when the key was not live. -EINVAL when (main, sub) is not newer than the
 * key's newest revision. */
int ki_put(ki_index *idx, const char *key, size_t key_len, int64_t main, int64_t sub,
           int64_t *out /* [4] */);
/* Ends the key's live generation with a tombstone at (main, sub). KI_NOT_LIVE (and
 * nothing changes) when the key has no live generation. */
int ki_tombstone(ki_index *idx, const char *key, size_t key_len, int64_t main, int64_t sub);
/* The key's state at at_rev: out = {mod main, mod sub, create revision, version}.
 * KI_NOT_LIVE when the key is absent or deleted at at_rev. */
int ki_get(ki_index *idx, const char *key, size_t key_len, int64_t at_rev, int64_t *out);

/* Live keys at at_rev in [start, end) in key order (end_len 0 = no upper bound), at
 * most limit of them (0 = no limit). *total = all live keys in the range, *n = items
 * returned; *nums = n * KI_RANGE_FIELDS integers, *keys = the key bytes the offsets
 * point into. */
int ki_range(ki_index *idx, const char *start, size_t start_len, const char *end,
             size_t end_len, int64_t at_rev, int64_t limit, int64_t *total, int64_t *n,
             const int64_t **nums, const char **keys);
/* Number of live keys at at_rev in [start, end), without materializing them. */
int ki_count(ki_index *idx, const char *start, size_t start_len, const char *end,
             size_t end_len, int64_t at_rev, int64_t *total);

/* Drops what no read at or after at_rev needs (etcd's rule: per key keep the newest
 * revision <= at_rev of a live generation; drop older ones, generations whose
 * tombstone is <= at_rev, and keys left empty). *n = dropped revisions, *revs =
 * n * KI_COMPACT_FIELDS integers in key order, so the caller deletes those records. */
int ki_compact(ki_index *idx, int64_t at_rev, int64_t *n, const int64_t **revs);

/* Replays one stored record at start-up, in revision order: a put with its stored
 * create revision and version (which may start mid-generation after a compaction), or a
 * tombstone. -EINVAL when the record does not continue the key's history. */
int ki_restore(ki_index *idx, const char *key, size_t key_len, int64_t main, int64_t sub,
               int64_t create_revision, int64_t version, int tombstone);

/* ki_restore for n records as the MVCC store keeps them in LMDB, in revision order:
 * keys/vals hold the records' LMDB keys (16 big-endian bytes of main and sub, plus 't'
 * for a tombstone) and values (serialized mvccpb.KeyValue) back to back, key_lens and
 * val_lens their lengths. They are replayed in key order (each key's records in their
 * order), which keeps the tree's descents in cache. leased[0..*nleased) = the indexes (in
 * this call) of puts that carry a lease. -EINVAL (or -ERANGE) naming record *done when it
 * is malformed or does not continue its key's history; the index then holds part of the
 * chunk and is to be discarded. -ENOMEM: nothing was replayed. */
int ki_restore_records(ki_index *idx, size_t n, const char *keys, const size_t *key_lens,
                       const char *vals, const size_t *val_lens, size_t *done,
                       size_t *leased, size_t *nleased);

/* Counts: keys, revisions held, bytes allocated (entries and nodes, without malloc's
 * own overhead). */
int ki_stats(ki_index *idx, int64_t *keys, int64_t *revisions, int64_t *bytes);

#endif
