/* Shared-memory SPSC ring. Layout and contracts: ring.h. */
#define _GNU_SOURCE
#include "ring.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RING_MAGIC 0x676e6972766b7270ull /* "prkvring" */
#define RING_VERSION 1
#define LINE 128 /* two cache lines: adjacent-line prefetchers pair them */

struct ring_header {
    uint64_t magic;
    uint32_t version;
    uint32_t header_bytes;
    uint64_t capacity;
    _Atomic int32_t pid[2];      /* by role; 0 until attached */
    _Atomic uint32_t attached[2];
    _Atomic uint32_t closed[2];
    /* Each on its own line pair. The flags are armed by the side that is about to sleep and
     * taken (reset) by the side that wakes it. */
    alignas(LINE) _Atomic uint64_t head;            /* written by the producer */
    alignas(LINE) _Atomic uint32_t consumer_asleep; /* armed by the consumer */
    alignas(LINE) _Atomic uint64_t tail;            /* written by the consumer */
    alignas(LINE) _Atomic uint32_t producer_waits;  /* armed by the producer */
};

/* One side's registration for a wake-up: `flag` in shared memory, `fd` the eventfd the other
 * side writes when it takes the flag. outstanding counts takes whose eventfd write has not been
 * read back yet (the write follows the take, so it may land a moment later). */
struct waiter {
    _Atomic uint32_t *flag;
    int fd;
    int armed;
    uint64_t outstanding;
};

struct shm_ring {
    struct ring_header *hdr;
    uint8_t *map;      /* header page + data + data again */
    uint8_t *data;
    size_t map_len;
    uint64_t capacity; /* power of two */
    uint64_t position; /* producer: head; consumer: tail (this side owns it) */
    uint64_t other;    /* last seen value of the other side's counter */
    int role;
    int memfd, messages_fd, space_fd;
    int peer_pidfd; /* -1 until known */
    pid_t owner;    /* the process that created or attached this end */
    struct waiter self;
    _Atomic uint32_t *peer_flag; /* the flag the peer arms, which this side takes */
    int peer_fd;                 /* and the eventfd that wakes it */
};

static inline uint64_t framed(uint32_t len)
{
    return (RING_MESSAGE_HEADER_BYTES + (uint64_t)len + 7) & ~(uint64_t)7;
}

/* Wake the peer if it armed its flag. Callers publish their counter and issue a seq_cst fence
 * first: with the peer's "arm, fence, re-check", one of the two always sees the other. */
static int wake_peer(shm_ring *r)
{
    if (atomic_load_explicit(r->peer_flag, memory_order_relaxed) == 0 ||
        atomic_exchange_explicit(r->peer_flag, 0, memory_order_acq_rel) == 0)
        return 0;
    uint64_t one = 1;
    if (write(r->peer_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

/* Read back the eventfd writes of takes we know about, so the fd is not left readable (a
 * level-triggered event loop would call its reader again and again). */
static int waiter_drain(struct waiter *w)
{
    if (w->outstanding == 0)
        return 0;
    uint64_t count;
    if (read(w->fd, &count, sizeof count) < 0)
        return errno == EAGAIN ? 0 : -errno; /* not landed yet: a later call reads it */
    w->outstanding = count >= w->outstanding ? 0 : w->outstanding - count;
    return 0;
}

/* Before (re)arming: notice whether the peer took the flag we armed last time. */
static int waiter_settle(struct waiter *w)
{
    if (w->armed && atomic_load_explicit(w->flag, memory_order_relaxed) == 0) {
        w->armed = 0;
        w->outstanding++;
    }
    return waiter_drain(w);
}

static void waiter_arm(struct waiter *w)
{
    atomic_store_explicit(w->flag, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    w->armed = 1;
}

/* This side has work again: withdraw the flag so the peer makes no system call for it. */
static int waiter_disarm(struct waiter *w)
{
    if (w->armed) {
        w->armed = 0;
        if (atomic_exchange_explicit(w->flag, 0, memory_order_acq_rel) == 0)
            w->outstanding++; /* the peer took it first: its eventfd write is on the way */
    }
    return waiter_drain(w);
}

static int open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) {
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        return fd;
    }
    return -errno;
#else
    (void)pid;
    return -ENOSYS;
#endif
}

static int map_ring(shm_ring *r, size_t header)
{
    r->map_len = header + 2 * r->capacity;
    uint8_t *base = mmap(NULL, r->map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return -errno;
    int rc = 0;
    if (mmap(base, header + r->capacity, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, r->memfd,
             0) == MAP_FAILED ||
        mmap(base + header + r->capacity, r->capacity, PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_FIXED, r->memfd, (off_t)header) == MAP_FAILED) {
        rc = -errno;
        munmap(base, r->map_len);
        return rc;
    }
    r->map = base;
    r->hdr = (struct ring_header *)base;
    r->data = base + header;
    return 0;
}

static void init_roles(shm_ring *r)
{
    struct ring_header *h = r->hdr;
    if (r->role == RING_PRODUCER) {
        r->self = (struct waiter){&h->producer_waits, r->space_fd, 0, 0};
        r->peer_flag = &h->consumer_asleep;
        r->peer_fd = r->messages_fd;
        r->position = atomic_load_explicit(&h->head, memory_order_relaxed);
        r->other = atomic_load_explicit(&h->tail, memory_order_acquire);
    } else {
        r->self = (struct waiter){&h->consumer_asleep, r->messages_fd, 0, 0};
        r->peer_flag = &h->producer_waits;
        r->peer_fd = r->space_fd;
        r->position = atomic_load_explicit(&h->tail, memory_order_relaxed);
        r->other = atomic_load_explicit(&h->head, memory_order_acquire);
    }
}

/* Claim the role in shared memory and note our pid; learn the peer's pidfd if it is there. */
static int claim_role(shm_ring *r)
{
    uint32_t expected = 0;
    if (!atomic_compare_exchange_strong(&r->hdr->attached[r->role], &expected, 1))
        return -EBUSY;
    atomic_store(&r->hdr->pid[r->role], (int32_t)getpid());
    init_roles(r);
    return 0;
}

static void release_fds(shm_ring *r)
{
    int fds[] = {r->memfd, r->messages_fd, r->space_fd, r->peer_pidfd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

static shm_ring *new_ring(int role)
{
    shm_ring *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->role = role;
    r->memfd = r->messages_fd = r->space_fd = r->peer_pidfd = -1;
    r->owner = getpid();
    return r;
}

int ring_create(uint64_t capacity, int role, shm_ring **out)
{
    long page = sysconf(_SC_PAGESIZE);
    if (role != RING_PRODUCER && role != RING_CONSUMER)
        return -EINVAL;
    if (capacity < (uint64_t)page || (capacity & (capacity - 1)) != 0 || capacity > (1ull << 32))
        return -EINVAL;
    shm_ring *r = new_ring(role);
    if (r == NULL)
        return -ENOMEM;
    int rc;
    r->capacity = capacity;
    r->memfd = memfd_create("pyraftkv-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    r->messages_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r->space_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->memfd < 0 || r->messages_fd < 0 || r->space_fd < 0) {
        rc = -errno;
        goto fail;
    }
    if (ftruncate(r->memfd, (off_t)(page + capacity)) < 0 ||
        fcntl(r->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        rc = -errno; /* sealed: the peer cannot shrink the file under our mapping (SIGBUS) */
        goto fail;
    }
    rc = map_ring(r, (size_t)page);
    if (rc < 0)
        goto fail;
    r->hdr->magic = RING_MAGIC;
    r->hdr->version = RING_VERSION;
    r->hdr->header_bytes = (uint32_t)page;
    r->hdr->capacity = capacity;
    rc = claim_role(r);
    if (rc < 0)
        goto fail_unmap;
    *out = r;
    return 0;
fail_unmap:
    munmap(r->map, r->map_len);
fail:
    release_fds(r);
    free(r);
    return rc;
}

int ring_attach(int memfd, int messages_fd, int space_fd, int role, shm_ring **out)
{
    if (role != RING_PRODUCER && role != RING_CONSUMER)
        return -EINVAL;
    shm_ring *r = new_ring(role);
    if (r == NULL)
        return -ENOMEM;
    int rc;
    r->memfd = fcntl(memfd, F_DUPFD_CLOEXEC, 0);
    r->messages_fd = fcntl(messages_fd, F_DUPFD_CLOEXEC, 0);
    r->space_fd = fcntl(space_fd, F_DUPFD_CLOEXEC, 0);
    if (r->memfd < 0 || r->messages_fd < 0 || r->space_fd < 0) {
        rc = -errno;
        goto fail;
    }
    struct ring_header probe;
    struct stat st;
    if (fstat(r->memfd, &st) < 0) {
        rc = -errno;
        goto fail;
    }
    ssize_t got = pread(r->memfd, &probe, sizeof probe, 0);
    if (got != (ssize_t)sizeof probe) {
        rc = got < 0 ? -errno : -EPROTO;
        goto fail;
    }
    uint64_t capacity = probe.capacity;
    if (probe.magic != RING_MAGIC || probe.version != RING_VERSION || capacity == 0 ||
        (capacity & (capacity - 1)) != 0 || probe.header_bytes == 0 ||
        (uint64_t)st.st_size != probe.header_bytes + capacity) {
        rc = -EPROTO;
        goto fail;
    }
    r->capacity = capacity;
    rc = map_ring(r, probe.header_bytes);
    if (rc < 0)
        goto fail;
    rc = claim_role(r);
    if (rc < 0)
        goto fail_unmap;
    /* The creator is normally our parent and alive now: take its pidfd before it could exit
     * and have its pid reused. */
    int32_t peer = atomic_load(&r->hdr->pid[1 - role]);
    if (peer > 0)
        r->peer_pidfd = open_pidfd(peer);
    if (r->peer_pidfd < 0)
        r->peer_pidfd = -1;
    *out = r;
    return 0;
fail_unmap:
    munmap(r->map, r->map_len);
fail:
    release_fds(r);
    free(r);
    return rc;
}

int ring_fds(const shm_ring *r, int *memfd, int *messages_fd, int *space_fd)
{
    *memfd = r->memfd;
    *messages_fd = r->messages_fd;
    *space_fd = r->space_fd;
    return 0;
}

int ring_capacity(const shm_ring *r, uint64_t *capacity)
{
    *capacity = r->capacity;
    return 0;
}

int ring_push(shm_ring *r, size_t count, const uint32_t *lens, const uint8_t *data,
              size_t data_len, size_t *pushed)
{
    *pushed = 0;
    if (r->role != RING_PRODUCER)
        return -EPERM;
    size_t sum = 0;
    for (size_t i = 0; i < count; i++) {
        if (framed(lens[i]) > r->capacity)
            return -EMSGSIZE;
        sum += lens[i];
    }
    if (sum != data_len)
        return -EINVAL;
    if (atomic_load_explicit(&r->hdr->closed[RING_CONSUMER], memory_order_acquire))
        return -EPIPE;

    uint64_t head = r->position, mask = r->capacity - 1;
    size_t i = 0;
    for (; i < count; i++) {
        uint64_t need = framed(lens[i]);
        if (head + need - r->other > r->capacity) {
            r->other = atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
            if (head + need - r->other > r->capacity) {
                /* Full: register as waiting, then look once more (the consumer may have freed
                 * space between the two loads, and would not have seen the flag). */
                int rc = waiter_settle(&r->self);
                if (rc < 0)
                    return rc;
                if (!r->self.armed)
                    waiter_arm(&r->self);
                r->other = atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
                if (head + need - r->other > r->capacity)
                    break;
                rc = waiter_disarm(&r->self);
                if (rc < 0)
                    return rc;
            }
        }
        uint8_t *slot = r->data + (head & mask);
        memcpy(slot, &lens[i], RING_MESSAGE_HEADER_BYTES);
        memcpy(slot + RING_MESSAGE_HEADER_BYTES, data, lens[i]);
        data += lens[i];
        head += need;
    }
    if (i == count) {
        int rc = waiter_disarm(&r->self); /* not waiting for space any more */
        if (rc < 0)
            return rc;
    }
    *pushed = i;
    if (i == 0)
        return 0;
    r->position = head;
    atomic_store_explicit(&r->hdr->head, head, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    return wake_peer(r);
}

int ring_pop(shm_ring *r, size_t max_messages, uint8_t *out, size_t out_len, uint32_t *lens,
             size_t *popped, size_t *bytes)
{
    *popped = *bytes = 0;
    if (r->role != RING_CONSUMER)
        return -EPERM;
    uint64_t tail = r->position, mask = r->capacity - 1;
    size_t n = 0, used = 0;
    for (;;) {
        while (n < max_messages) {
            if (tail == r->other) {
                r->other = atomic_load_explicit(&r->hdr->head, memory_order_acquire);
                if (tail == r->other)
                    break;
                if (r->other - tail > r->capacity)
                    return -EPROTO; /* the producer is never more than a ring ahead */
            }
            const uint8_t *slot = r->data + (tail & mask);
            uint32_t len;
            memcpy(&len, slot, sizeof len);
            if (framed(len) > r->other - tail)
                return -EPROTO; /* a length the producer never wrote: the ring is damaged */
            if (len > out_len - used) {
                if (n == 0) {
                    *bytes = len;
                    return -ENOBUFS;
                }
                break;
            }
            memcpy(out + used, slot + RING_MESSAGE_HEADER_BYTES, len);
            lens[n++] = len;
            used += len;
            tail += framed(len);
        }
        if (n > 0 || max_messages == 0)
            break;
        /* Empty: register as asleep, then look once more (see wake_peer). */
        int rc = waiter_settle(&r->self);
        if (rc < 0)
            return rc;
        if (r->self.armed)
            break;
        waiter_arm(&r->self);
        r->other = atomic_load_explicit(&r->hdr->head, memory_order_acquire);
        if (tail == r->other)
            break;
        rc = waiter_disarm(&r->self); /* something arrived meanwhile: take it now */
        if (rc < 0)
            return rc;
    }
    *popped = n;
    *bytes = used;
    if (n == 0)
        return 0;
    int rc = waiter_disarm(&r->self); /* awake: the producer need not write the eventfd */
    if (rc < 0)
        return rc;
    r->position = tail;
    atomic_store_explicit(&r->hdr->tail, tail, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    return wake_peer(r);
}

int ring_peer_alive(shm_ring *r, int *alive)
{
    int peer = 1 - r->role;
    *alive = 0;
    if (atomic_load_explicit(&r->hdr->closed[peer], memory_order_acquire))
        return 0;
    int32_t pid = atomic_load_explicit(&r->hdr->pid[peer], memory_order_acquire);
    if (pid <= 0) {
        *alive = 1; /* not attached yet */
        return 0;
    }
    if (r->peer_pidfd < 0) {
        int fd = open_pidfd(pid);
        if (fd == -ESRCH)
            return 0;
        if (fd < 0) { /* no pidfd support: fall back to the pid (a zombie counts as alive) */
            *alive = kill(pid, 0) == 0 || errno == EPERM;
            return 0;
        }
        r->peer_pidfd = fd;
    }
    struct pollfd p = {.fd = r->peer_pidfd, .events = POLLIN};
    int rc = poll(&p, 1, 0);
    if (rc < 0)
        return -errno;
    *alive = rc == 0; /* a pidfd turns readable when the process exits */
    return 0;
}

int ring_close(shm_ring *r)
{
    if (r == NULL)
        return 0;
    int rc = 0;
    /* A forked child that inherited this end and lets go of its copy must not close the end
     * its parent still uses. */
    if (getpid() == r->owner) {
        atomic_store_explicit(&r->hdr->closed[r->role], 1, memory_order_release);
        atomic_thread_fence(memory_order_seq_cst);
        rc = wake_peer(r); /* a peer asleep on us must learn that we are gone */
    }
    munmap(r->map, r->map_len);
    release_fds(r);
    free(r);
    return rc;
}
