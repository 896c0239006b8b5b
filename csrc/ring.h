/* Single-producer single-consumer ring of variable-size messages in shared memory.
 *
 * The memory is a memfd (nothing to leak in /dev/shm; the descriptor passes to a child with
 * fork or subprocess pass_fds): one page of header, then `capacity` bytes of data mapped twice
 * back to back, so a message that wraps is still contiguous in virtual memory. Each message is
 * a u32 length and the bytes, padded to 8. head and tail are byte counters that only grow.
 *
 * Wake-ups: two eventfds. A side that runs out of work (consumer: no messages; producer: no
 * space) arms a flag in shared memory, then re-checks; the other side writes the eventfd only
 * when it takes an armed flag, so there is at most one eventfd write per batch and none while
 * the peer is awake. Both sides use the fd in an event loop (add_reader) and just call
 * ring_pop / ring_push again when it becomes readable: those calls read the eventfd themselves
 * when a wake-up is pending, so it never stays readable for nothing.
 *
 * Threading: each end is used by one thread at a time. Every function returns 0 or a negative
 * errno: -EMSGSIZE a message can never fit, -EPIPE the consumer has closed, -EBUSY the role is
 * already attached, -EPROTO the shared memory is not a ring or is damaged, -ENOBUFS the output
 * buffer cannot hold the next message (*bytes says how big it must be).
 */
#ifndef PYRAFTKV_RING_H
#define PYRAFTKV_RING_H

#include <stddef.h>
#include <stdint.h>

#define RING_PRODUCER 0
#define RING_CONSUMER 1
#define RING_MESSAGE_HEADER_BYTES 4

typedef struct shm_ring shm_ring;

/* Create a ring with capacity bytes of data (a power of two, at least a page) and attach to it
 * as `role`. The ring owns its three descriptors. */
int ring_create(uint64_t capacity, int role, shm_ring **out);

/* Attach to a ring created by another process from its three descriptors (memfd, messages
 * eventfd, space eventfd). The descriptors are duplicated: the caller keeps its own. */
int ring_attach(int memfd, int messages_fd, int space_fd, int role, shm_ring **out);

/* The ring's descriptors, to hand to the other process. */
int ring_fds(const shm_ring *r, int *memfd, int *messages_fd, int *space_fd);

int ring_capacity(const shm_ring *r, uint64_t *capacity);

/* Producer: append messages in order while they fit (lens[i] bytes each, back to back in data,
 * data_len in all); *pushed says how many. When some did not fit, the producer is registered
 * as waiting: space_fd becomes readable once the consumer frees space. Nothing is overwritten.
 * With count 0 it only reads back a wake-up that is no longer needed. */
int ring_push(shm_ring *r, size_t count, const uint32_t *lens, const uint8_t *data,
              size_t data_len, size_t *pushed);

/* Consumer: copy up to max_messages messages back to back into out (out_len bytes), their
 * lengths into lens; *popped messages, *bytes bytes. When none is there, the consumer is
 * registered as sleeping: messages_fd becomes readable when the next batch is pushed. */
int ring_pop(shm_ring *r, size_t max_messages, uint8_t *out, size_t out_len, uint32_t *lens,
             size_t *popped, size_t *bytes);

/* *alive = 0 once the other end has closed or its process has exited, 1 otherwise (also while
 * it has not attached yet). Uses a pidfd, so a reused pid is not mistaken for the peer. */
int ring_peer_alive(shm_ring *r, int *alive);

/* Mark this end closed and wake the peer (only in the process that created or attached it, not
 * in a forked child holding a copy), then unmap and close everything. */
int ring_close(shm_ring *r);

#endif
