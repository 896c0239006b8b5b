/* Write-ahead log, the byte level: record framing, batched append, timed fdatasync, scanning.
 *
 * The Python side (pyraftkv/wal.py) owns the directory, the segment files and their file
 * descriptors, the lock and the meaning of records; this file turns batches into bytes and
 * bytes back into verified records, which is where the time goes.
 *
 * Record format (little endian; every record starts at a multiple of 8 bytes):
 *    0  u32 payload_len
 *    4  u8  type            WAL_RECORD_*
 *    5  u8  reserved[3]     zero
 *    8  u32 crc             crc32c of bytes 0..7 and the payload, continuing from the crc of the
 *                           previous record in the segment (the first record starts from 0), so
 *                           a stale record left from an older chain can never validate
 *   12  u32 header_crc      crc32c of bytes 0..11: the length is checked before it is trusted
 *   16  payload, then zero padding to a multiple of 8
 *  end  u8  commit_mark[8]  WAL_COMMIT_MARK, never zero: tells a complete record from a torn one
 *
 * Payloads: SEGMENT  u64 seq, u64 last_index, u32 prev_segment_crc, u32 zero, metadata bytes
 *           ENTRY    u64 term, u64 index, u8 entry_type, data bytes
 *           HARD_STATE u64 term, u64 vote, u64 commit
 *           SNAPSHOT u64 index, u64 term, data bytes (opaque, e.g. the membership at index)
 *           TRUNCATE u64 index (entries at and above index are void)
 *
 * Threading: a wal_writer is used by one thread at a time (append and sync may run on a worker
 * thread with the GIL released); only wal_sync_histogram may be called from any thread at any
 * time, it reads atomic counters.
 *
 * Every function returns 0 or a negative errno, or one of the WAL_E_* codes below.
 */
#ifndef PYRAFTKV_WAL_H
#define PYRAFTKV_WAL_H

#include <stddef.h>
#include <stdint.h>

#define WAL_RECORD_SEGMENT 1
#define WAL_RECORD_ENTRY 2
#define WAL_RECORD_HARD_STATE 3
#define WAL_RECORD_SNAPSHOT 4
#define WAL_RECORD_TRUNCATE 5

#define WAL_HEADER_BYTES 16
#define WAL_COMMIT_MARK_BYTES 8
#define WAL_ENTRY_PREFIX_BYTES 17
#define WAL_SEGMENT_PREFIX_BYTES 24
#define WAL_MAX_PAYLOAD (1 << 30)

#define WAL_E_FULL (-30001)   /* the batch does not fit in this segment: start a new one */
#define WAL_E_FAILED (-30002) /* an earlier write or fdatasync failed: the writer refuses */
#define WAL_E_INVARIANT (-30003) /* an impossible writer state (a bug): the writer refuses */

/* Latency histogram: 8 buckets per power of two of nanoseconds (at most 12.5 % wide). */
#define WAL_HISTOGRAM_BUCKETS 496

/* Scan results (wal_scan_state.status). */
#define WAL_SCAN_MORE 0    /* the record array filled up: call again */
#define WAL_SCAN_END 1     /* clean end: a zero header and nothing but zeros after it */
#define WAL_SCAN_TORN 2    /* the failing record looks like an interrupted write (rule in wal.c) */
#define WAL_SCAN_CORRUPT 3 /* the failing record is damaged data, not an interrupted write */

/* Why a record failed (wal_scan_state.reason). */
#define WAL_BAD_HEADER_CUT 1     /* the file ends inside a record header */
#define WAL_BAD_HEADER_CRC 2     /* header checksum mismatch */
#define WAL_BAD_HEADER_FIELDS 3  /* checksummed header with an unknown type or bad length */
#define WAL_BAD_RECORD_CUT 4     /* the file ends inside the record */
#define WAL_BAD_COMMIT_MARK 5    /* commit mark missing or damaged */
#define WAL_BAD_CRC 6            /* payload checksum mismatch in a complete record */
#define WAL_BAD_DATA_AFTER_END 7 /* a zero header followed by non-zero bytes */
#define WAL_BAD_LOST_SECTOR 8    /* a zeroed sector inside an unsynced write, data after it */

typedef struct wal_writer wal_writer;

typedef struct wal_record {
    uint64_t payload_offset;
    uint32_t payload_len;
    uint32_t type;
} wal_record;

typedef struct wal_scan_state {
    uint64_t offset;   /* next record to read; at the end: where the valid records end */
    uint32_t crc;      /* chain value after the last valid record */
    int32_t status;    /* WAL_SCAN_* */
    int32_t reason;    /* WAL_BAD_* for TORN and CORRUPT */
    uint32_t unused;
    uint64_t data_end; /* TORN: just past the last byte that is dropped */
} wal_scan_state;

int wal_writer_new(wal_writer **out);
void wal_writer_free(wal_writer *w);

/* Continue appending to an existing segment at `offset` whose last record has chain `crc`;
 * `limit` is the segment's size. The writer does not own fd. */
int wal_writer_attach(wal_writer *w, int fd, uint64_t offset, uint64_t limit, uint32_t crc);

/* Write the opening records of a fresh segment file at offset 0 with one pwrite (SEGMENT with
 * the chain value of the segment written so far, SNAPSHOT with snapshot_payload when it is not
 * NULL, HARD_STATE), then attach the writer to it. Nothing is synced. On failure the writer is
 * unchanged. */
int wal_start_segment(wal_writer *w, int fd, uint64_t limit, uint64_t seq, uint64_t last_index,
                      const uint8_t *metadata, size_t metadata_len, const uint64_t *hard_state,
                      const uint8_t *snapshot_payload, size_t snapshot_payload_len);

/* Append `count` entries with indexes first_index, first_index + 1, ... and, when hard_state is
 * not NULL, a HARD_STATE record after them, with one pwrite. data holds the entries' data back
 * to back (data_lens[i] bytes each, data_len in all). WAL_E_FULL: nothing written, *needed says
 * how many bytes the batch takes. */
int wal_append_entries(wal_writer *w, size_t count, uint64_t first_index, const uint64_t *terms,
                       const uint8_t *entry_types, const uint32_t *data_lens, const uint8_t *data,
                       size_t data_len, const uint64_t *hard_state, uint64_t *needed);

/* Append one record of any type with one pwrite; WAL_E_FULL as above. */
int wal_append_record(wal_writer *w, uint32_t type, const uint8_t *payload, size_t payload_len,
                      uint64_t *needed);

/* fdatasync the current segment; *elapsed_ns is how long it took (also added to the histogram). */
int wal_sync(wal_writer *w, uint64_t *elapsed_ns);

/* Copy the fdatasync latency histogram: buckets[WAL_HISTOGRAM_BUCKETS] counts, and totals. */
int wal_sync_histogram(const wal_writer *w, uint64_t *buckets, uint64_t *count, uint64_t *sum_ns,
                       uint64_t *max_ns);

/* Verify records of one segment held in buf[0..len), starting at st->offset with chain st->crc,
 * storing up to max_records into out (*count of them). Stops at the first failing record and
 * classifies it (st->status, st->reason); WAL_SCAN_MORE means call again with the same state. */
int wal_scan(const uint8_t *buf, size_t len, wal_scan_state *st, wal_record *out,
             size_t max_records, size_t *count);

#endif
