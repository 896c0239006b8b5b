/* Write-ahead log, the byte level. Format and contracts: wal.h. */
#define _GNU_SOURCE
#include "wal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"

/* Never zero in any byte, so a record whose end never reached the disk is recognisable. */
static const uint8_t COMMIT_MARK[WAL_COMMIT_MARK_BYTES] = {'p', 'k', 'w', 'a', 'l', 'E', 'N', 'D'};

struct wal_writer {
    int fd;          /* current segment, not owned; -1 until attached */
    int failed;      /* negative errno of the write or sync that failed; 0 while healthy */
    uint64_t offset; /* where the next record goes */
    uint64_t limit;  /* size of the current segment */
    uint32_t crc;    /* chain value of the last record written */
    uint8_t *buf;    /* framing buffer, reused between batches */
    size_t cap;
    _Atomic uint64_t histogram[WAL_HISTOGRAM_BUCKETS];
    _Atomic uint64_t sync_count;
    _Atomic uint64_t sync_sum_ns;
    _Atomic uint64_t sync_max_ns;
};

static inline size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

static inline size_t record_size(size_t payload_len)
{
    return align8(WAL_HEADER_BYTES + payload_len) + WAL_COMMIT_MARK_BYTES;
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int all_zero(const uint8_t *p, size_t n)
{
    /* memcmp against itself shifted by one byte runs at memory speed. */
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Header fields of a record at rec whose payload (payload_len bytes) is already in place. */
static void begin_record(uint8_t *rec, uint32_t type, size_t payload_len)
{
    put_le32(rec, (uint32_t)payload_len);
    rec[4] = (uint8_t)type;
    rec[5] = rec[6] = rec[7] = 0;
}

/* Pad, checksum and mark the record at rec; returns the end of the record. */
static uint8_t *finish_record(uint8_t *rec, size_t payload_len, uint32_t *chain)
{
    size_t body_end = align8(WAL_HEADER_BYTES + payload_len);
    memset(rec + WAL_HEADER_BYTES + payload_len, 0, body_end - WAL_HEADER_BYTES - payload_len);
    uint32_t crc = crc32c_update(*chain, rec, 8);
    crc = crc32c_update(crc, rec + WAL_HEADER_BYTES, body_end - WAL_HEADER_BYTES);
    put_le32(rec + 8, crc);
    put_le32(rec + 12, crc32c_update(0, rec, 12));
    memcpy(rec + body_end, COMMIT_MARK, WAL_COMMIT_MARK_BYTES);
    *chain = crc;
    return rec + body_end + WAL_COMMIT_MARK_BYTES;
}

static uint8_t *frame_record(uint8_t *rec, uint32_t type, const uint8_t *payload, size_t len,
                             uint32_t *chain)
{
    begin_record(rec, type, len);
    if (len > 0)
        memcpy(rec + WAL_HEADER_BYTES, payload, len);
    return finish_record(rec, len, chain);
}

static uint8_t *frame_hard_state(uint8_t *rec, const uint64_t *hard_state, uint32_t *chain)
{
    uint8_t payload[24];
    for (int i = 0; i < 3; i++)
        put_le64(payload + 8 * i, hard_state[i]);
    return frame_record(rec, WAL_RECORD_HARD_STATE, payload, sizeof payload, chain);
}

static int reserve(wal_writer *w, size_t bytes)
{
    if (bytes <= w->cap)
        return 0;
    size_t cap = w->cap ? w->cap : 64 * 1024;
    while (cap < bytes)
        cap *= 2;
    uint8_t *buf = realloc(w->buf, cap);
    if (buf == NULL)
        return -ENOMEM;
    w->buf = buf;
    w->cap = cap;
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t offset)
{
    while (n > 0) {
        ssize_t written = pwrite(fd, p, n, (off_t)offset);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (written == 0)
            return -EIO;
        p += written;
        n -= (size_t)written;
        offset += (uint64_t)written;
    }
    return 0;
}

/* Write w->buf[0..bytes) at the append position. A failed write leaves the file in an unknown
 * state, so the writer refuses everything afterwards: the log must be reopened (recovered). */
static int commit_buffer(wal_writer *w, size_t bytes, uint32_t chain)
{
    int rc = write_all(w->fd, w->buf, bytes, w->offset);
    if (rc < 0) {
        w->failed = rc;
        return rc;
    }
    w->offset += bytes;
    w->crc = chain;
    return 0;
}

static int check_usable(const wal_writer *w)
{
    if (w->failed)
        return WAL_E_FAILED;
    if (w->fd < 0)
        return -EBADF;
    if (w->offset > w->limit) /* the append position never passes the segment's end */
        return WAL_E_INVARIANT;
    return 0;
}

int wal_writer_new(wal_writer **out)
{
    wal_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return -ENOMEM;
    w->fd = -1;
    *out = w;
    return 0;
}

void wal_writer_free(wal_writer *w)
{
    if (w == NULL)
        return;
    free(w->buf);
    free(w);
}

int wal_writer_attach(wal_writer *w, int fd, uint64_t offset, uint64_t limit, uint32_t crc)
{
    if (fd < 0 || offset > limit || (offset & 7) != 0)
        return -EINVAL;
    if (w->failed)
        return WAL_E_FAILED;
    w->fd = fd;
    w->offset = offset;
    w->limit = limit;
    w->crc = crc;
    return 0;
}

int wal_start_segment(wal_writer *w, int fd, uint64_t limit, uint64_t seq, uint64_t last_index,
                      const uint8_t *metadata, size_t metadata_len, const uint64_t *hard_state,
                      const uint8_t *snapshot_payload, size_t snapshot_payload_len)
{
    if (w->failed)
        return WAL_E_FAILED;
    if (fd < 0 || metadata_len > WAL_MAX_PAYLOAD - WAL_SEGMENT_PREFIX_BYTES ||
        snapshot_payload_len > WAL_MAX_PAYLOAD)
        return -EINVAL;
    size_t seg_payload = WAL_SEGMENT_PREFIX_BYTES + metadata_len;
    size_t total = record_size(seg_payload) + record_size(24) +
                   (snapshot_payload ? record_size(snapshot_payload_len) : 0);
    if (total > limit)
        return -EINVAL;
    int rc = reserve(w, total);
    if (rc < 0)
        return rc;

    uint32_t chain = 0; /* each segment's chain starts afresh; its predecessor's crc is inside */
    uint8_t *rec = w->buf;
    begin_record(rec, WAL_RECORD_SEGMENT, seg_payload);
    uint8_t *payload = rec + WAL_HEADER_BYTES;
    put_le64(payload, seq);
    put_le64(payload + 8, last_index);
    put_le32(payload + 16, w->crc);
    put_le32(payload + 20, 0);
    if (metadata_len > 0)
        memcpy(payload + WAL_SEGMENT_PREFIX_BYTES, metadata, metadata_len);
    rec = finish_record(rec, seg_payload, &chain);
    if (snapshot_payload)
        rec = frame_record(rec, WAL_RECORD_SNAPSHOT, snapshot_payload, snapshot_payload_len,
                           &chain);
    rec = frame_hard_state(rec, hard_state, &chain);

    rc = write_all(fd, w->buf, total, 0);
    if (rc < 0)
        return rc; /* the fresh file is discarded by the caller; the writer is untouched */
    w->fd = fd;
    w->offset = total;
    w->limit = limit;
    w->crc = chain;
    return 0;
}

int wal_append_entries(wal_writer *w, size_t count, uint64_t first_index, const uint64_t *terms,
                       const uint8_t *entry_types, const uint32_t *data_lens, const uint8_t *data,
                       size_t data_len, const uint64_t *hard_state, uint64_t *needed)
{
    int rc = check_usable(w);
    if (rc < 0)
        return rc;
    if (count > 0 && first_index > UINT64_MAX - count)
        return -EINVAL;

    size_t total = hard_state ? record_size(24) : 0, data_sum = 0;
    for (size_t i = 0; i < count; i++) {
        if (data_lens[i] > WAL_MAX_PAYLOAD - WAL_ENTRY_PREFIX_BYTES)
            return -EMSGSIZE;
        data_sum += data_lens[i];
        total += record_size(WAL_ENTRY_PREFIX_BYTES + data_lens[i]);
    }
    if (data_sum != data_len)
        return -EINVAL;
    *needed = total;
    if (total == 0)
        return 0;
    if (total > w->limit - w->offset)
        return WAL_E_FULL;
    rc = reserve(w, total);
    if (rc < 0)
        return rc;

    uint32_t chain = w->crc;
    uint8_t *rec = w->buf;
    for (size_t i = 0; i < count; i++) {
        size_t len = WAL_ENTRY_PREFIX_BYTES + data_lens[i];
        begin_record(rec, WAL_RECORD_ENTRY, len);
        uint8_t *payload = rec + WAL_HEADER_BYTES;
        put_le64(payload, terms[i]);
        put_le64(payload + 8, first_index + i);
        payload[16] = entry_types[i];
        if (data_lens[i] > 0)
            memcpy(payload + WAL_ENTRY_PREFIX_BYTES, data, data_lens[i]);
        data += data_lens[i];
        rec = finish_record(rec, len, &chain);
    }
    if (hard_state)
        rec = frame_hard_state(rec, hard_state, &chain);
    if ((size_t)(rec - w->buf) != total) { /* framed exactly what was sized */
        w->failed = WAL_E_INVARIANT;
        return WAL_E_INVARIANT;
    }
    return commit_buffer(w, total, chain);
}

int wal_append_record(wal_writer *w, uint32_t type, const uint8_t *payload, size_t payload_len,
                      uint64_t *needed)
{
    int rc = check_usable(w);
    if (rc < 0)
        return rc;
    if (type < WAL_RECORD_SEGMENT || type > WAL_RECORD_TRUNCATE || type == WAL_RECORD_SEGMENT)
        return -EINVAL;
    if (payload_len > WAL_MAX_PAYLOAD)
        return -EMSGSIZE;
    size_t total = record_size(payload_len);
    *needed = total;
    if (total > w->limit - w->offset)
        return WAL_E_FULL;
    rc = reserve(w, total);
    if (rc < 0)
        return rc;
    uint32_t chain = w->crc;
    if ((size_t)(frame_record(w->buf, type, payload, payload_len, &chain) - w->buf) != total) {
        w->failed = WAL_E_INVARIANT;
        return WAL_E_INVARIANT;
    }
    return commit_buffer(w, total, chain);
}

static int histogram_bucket(uint64_t ns)
{
    if (ns < 16)
        return (int)ns;
    int octave = 63 - __builtin_clzll(ns); /* >= 4 */
    return (octave - 2) * 8 + (int)((ns >> (octave - 3)) & 7);
}

int wal_sync(wal_writer *w, uint64_t *elapsed_ns)
{
    int rc = check_usable(w);
    if (rc < 0)
        return rc;
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        rc = fdatasync(w->fd);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        /* After a failed fdatasync the kernel may have dropped the dirty pages: never retry. */
        w->failed = -errno;
        return w->failed;
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    uint64_t ns = (uint64_t)(end.tv_sec - start.tv_sec) * 1000000000u +
                  (uint64_t)(end.tv_nsec - start.tv_nsec);
    *elapsed_ns = ns;
    atomic_fetch_add_explicit(&w->histogram[histogram_bucket(ns)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->sync_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->sync_sum_ns, ns, memory_order_relaxed);
    if (ns > atomic_load_explicit(&w->sync_max_ns, memory_order_relaxed))
        atomic_store_explicit(&w->sync_max_ns, ns, memory_order_relaxed); /* one syncing thread */
    return 0;
}

int wal_sync_histogram(const wal_writer *w, uint64_t *buckets, uint64_t *count, uint64_t *sum_ns,
                       uint64_t *max_ns)
{
    for (int i = 0; i < WAL_HISTOGRAM_BUCKETS; i++)
        buckets[i] = atomic_load_explicit(&w->histogram[i], memory_order_relaxed);
    *count = atomic_load_explicit(&w->sync_count, memory_order_relaxed);
    *sum_ns = atomic_load_explicit(&w->sync_sum_ns, memory_order_relaxed);
    *max_ns = atomic_load_explicit(&w->sync_max_ns, memory_order_relaxed);
    return 0;
}

/* The torn-write rule: when is a record that fails verification an interrupted write?
 *
 * What a crash can leave: bytes are only ever appended, into space that reads as zeros
 * (fallocate), so an interrupted write leaves a prefix of the intended bytes followed by zeros
 * (preallocated space) or by the end of the file (the file cut short). Everything before the
 * last fdatasync is intact.
 *
 * A failing record at X is TORN when both hold:
 *   1. nothing follows it: every byte after the record (after its header when the header
 *      itself is bad) to the end of the file is zero; and
 *   2. it is visibly incomplete:
 *      - the file ends inside it (its header, when intact, says how long it is), or
 *      - its header is bad, and by 1 nothing follows the header: a complete record always
 *        has its non-zero commit mark after the header, so this is a partly written header, or
 *      - its commit mark, written last, is a strict prefix of the mark followed by zeros.
 * A failing record at X is also TORN (a lost sector) when a whole disk sector that overlaps it
 * (from X on) reads as zeros and non-zero bytes follow that sector: a power loss persisted a
 * later sector of an unsynced write but not an earlier one. Written data never reads back as a
 * zeroed sector, so that sector was never persisted, nor was anything after it: it cannot have
 * been acknowledged. (etcd treats a record holding a zeroed sector as torn the same way.)
 * Anything else is CORRUPT: a complete record (commit mark intact) whose checksum fails with no
 * zeroed sector in it, a bad header with data after it, a checksummed header with impossible
 * fields. A byte flipped in a complete record therefore reads as corruption, even in the very
 * last record, and acknowledged (synced) data is not dropped silently.
 *
 * The caller applies this to the last segment only: a segment is fdatasync'ed in full before the
 * next one is created, so any failure in an earlier segment is corruption.
 */
#define SECTOR_BYTES 512

/* Whether a sector overlapping [x, record_end) is zero from x on and data follows it. */
static int lost_sector(const uint8_t *buf, size_t len, size_t x, size_t record_end)
{
    for (size_t s = x / SECTOR_BYTES * SECTOR_BYTES; s < record_end; s += SECTOR_BYTES) {
        size_t lo = s > x ? s : x, hi = s + SECTOR_BYTES;
        if (hi >= len)
            return 0;
        if (all_zero(buf + lo, hi - lo))
            return !all_zero(buf + hi, len - hi);
    }
    return 0;
}

static void stop_at_failure(const uint8_t *buf, size_t len, wal_scan_state *st, int reason,
                            size_t record_end, int incomplete)
{
    size_t x = st->offset;
    st->reason = reason;
    st->status = WAL_SCAN_CORRUPT;
    if (record_end >= len) {
        st->status = incomplete ? WAL_SCAN_TORN : WAL_SCAN_CORRUPT;
        st->data_end = len;
        return;
    }
    if (lost_sector(buf, len, x, record_end)) {
        st->reason = WAL_BAD_LOST_SECTOR;
        st->status = WAL_SCAN_TORN;
        size_t end = len;
        while (end > x && buf[end - 1] == 0)
            end--;
        st->data_end = end;
        return;
    }
    if (!incomplete || !all_zero(buf + record_end, len - record_end))
        return;
    st->status = WAL_SCAN_TORN;
    size_t end = record_end;
    while (end > x && buf[end - 1] == 0)
        end--;
    st->data_end = end;
}

static int mark_is_torn(const uint8_t *mark)
{
    int j = 0;
    while (j < WAL_COMMIT_MARK_BYTES && mark[j] == COMMIT_MARK[j])
        j++;
    return j < WAL_COMMIT_MARK_BYTES && all_zero(mark + j, WAL_COMMIT_MARK_BYTES - j);
}

int wal_scan(const uint8_t *buf, size_t len, wal_scan_state *st, wal_record *out,
             size_t max_records, size_t *count)
{
    size_t n = 0;
    if (st->offset > len || (st->offset & 7) != 0)
        return -EINVAL;
    while (n < max_records) {
        size_t x = st->offset, left = len - x;
        const uint8_t *h = buf + x;
        if (left < WAL_HEADER_BYTES) {
            if (all_zero(h, left))
                st->status = WAL_SCAN_END;
            else
                stop_at_failure(buf, len, st, WAL_BAD_HEADER_CUT, len, 1);
            goto done;
        }
        if (all_zero(h, WAL_HEADER_BYTES)) {
            if (all_zero(h, left))
                st->status = WAL_SCAN_END;
            else
                stop_at_failure(buf, len, st, WAL_BAD_DATA_AFTER_END, x + WAL_HEADER_BYTES, 0);
            goto done;
        }
        if (crc32c_update(0, h, 12) != get_le32(h + 12)) {
            stop_at_failure(buf, len, st, WAL_BAD_HEADER_CRC, x + WAL_HEADER_BYTES, 1);
            goto done;
        }
        uint32_t payload_len = get_le32(h);
        uint32_t type = h[4];
        if (type < WAL_RECORD_SEGMENT || type > WAL_RECORD_TRUNCATE || h[5] || h[6] || h[7] ||
            payload_len > WAL_MAX_PAYLOAD) {
            stop_at_failure(buf, len, st, WAL_BAD_HEADER_FIELDS, x + WAL_HEADER_BYTES, 0);
            goto done;
        }
        size_t size = record_size(payload_len);
        if (size > left) {
            stop_at_failure(buf, len, st, WAL_BAD_RECORD_CUT, len, 1);
            goto done;
        }
        const uint8_t *mark = h + size - WAL_COMMIT_MARK_BYTES;
        if (memcmp(mark, COMMIT_MARK, WAL_COMMIT_MARK_BYTES) != 0) {
            stop_at_failure(buf, len, st, WAL_BAD_COMMIT_MARK, x + size, mark_is_torn(mark));
            goto done;
        }
        uint32_t crc = crc32c_update(st->crc, h, 8);
        crc = crc32c_update(crc, h + WAL_HEADER_BYTES,
                            size - WAL_HEADER_BYTES - WAL_COMMIT_MARK_BYTES);
        if (crc != get_le32(h + 8)) {
            stop_at_failure(buf, len, st, WAL_BAD_CRC, x + size, 0);
            goto done;
        }
        out[n].payload_offset = x + WAL_HEADER_BYTES;
        out[n].payload_len = payload_len;
        out[n].type = type;
        n++;
        st->crc = crc;
        st->offset = x + size;
    }
    st->status = WAL_SCAN_MORE;
done:
    *count = n;
    return 0;
}
