/* CRC32C (Castagnoli, the iSCSI / ext4 / etcd WAL checksum).
 *
 * The SSE4.2 crc32 instruction is used when the CPU has it (checked once at load time),
 * a slice-by-8 table otherwise. Both paths give identical results.
 *
 * `crc` is the value returned by the previous call (0 to start), so
 * crc32c_update(crc32c_update(0, a), b) == crc32c of a followed by b. These functions
 * cannot fail and return the checksum itself rather than an error code.
 */
#ifndef PYRAFTKV_CRC32C_H
#define PYRAFTKV_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Checksum of buf[0..len) continuing from crc, on the fastest path this CPU offers. */
uint32_t crc32c_update(uint32_t crc, const void *buf, size_t len);

/* The same on the table path, whatever the CPU: lets tests check one path against the other. */
uint32_t crc32c_update_software(uint32_t crc, const void *buf, size_t len);

/* 1 when crc32c_update uses the crc32 instruction, 0 when it uses the table path. */
int crc32c_hardware_available(void);

#endif
