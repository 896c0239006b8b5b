/* CRC32C (Castagnoli): hardware path with three interleaved streams, slice-by-8 fallback.
 *
 * Both paths work on the raw, non-inverted register; the public functions invert on the way
 * in and out so that a previous result can be passed back in to continue a checksum.
 *
 * Hardware path: one crc32 instruction has a latency of about 3 cycles but the CPU can
 * start one per cycle, so a single dependency chain uses a third of the unit. Long buffers
 * are cut into blocks of three equal lanes whose checksums run side by side; the lanes are
 * then joined with "shift by N zero bytes" operators, which are linear maps on the 32-bit
 * register and so can be tabulated (four 256-entry tables per lane length).
 */
#include "crc32c.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRC32C_HAVE_HW 1
#include <nmmintrin.h>
#endif

#define CRC32C_POLY 0x82F63B78u /* Castagnoli polynomial, bit-reflected */
#define LANE_LONG 8192          /* lane length for large buffers (3 lanes = 24 KiB blocks) */
#define LANE_SHORT 256          /* lane length for medium buffers (768-byte blocks) */

static uint32_t table[8][256];      /* slice-by-8 tables */
static uint32_t shift_long[4][256]; /* register -> register after LANE_LONG zero bytes */
static uint32_t shift_short[4][256];
static int hw_available;

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static uint32_t software_raw(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        len--;
    }
    while (len >= 8) {
        uint64_t w = load_le64(p) ^ crc;
        crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
              table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^
              table[2][(w >> 40) & 0xff] ^ table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len-- > 0)
        crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

static inline uint32_t shift_register(uint32_t (*t)[256], uint32_t crc)
{
    return t[0][crc & 0xff] ^ t[1][(crc >> 8) & 0xff] ^ t[2][(crc >> 16) & 0xff] ^ t[3][crc >> 24];
}

/* Tabulate the linear map "feed `zeros` zero bytes" from the images of the 32 basis vectors. */
static void build_shift_table(uint32_t (*t)[256], size_t zeros)
{
    uint32_t image[32];
    for (int bit = 0; bit < 32; bit++) {
        uint32_t reg = 1u << bit;
        for (size_t i = 0; i < zeros; i++)
            reg = table[0][reg & 0xff] ^ (reg >> 8);
        image[bit] = reg;
    }
    for (int k = 0; k < 4; k++) {
        for (uint32_t byte = 0; byte < 256; byte++) {
            uint32_t v = 0;
            for (int b = 0; b < 8; b++)
                if (byte & (1u << b))
                    v ^= image[8 * k + b];
            t[k][byte] = v;
        }
    }
}

#ifdef CRC32C_HAVE_HW
__attribute__((target("sse4.2"))) static uint32_t hardware_raw(uint32_t crc, const uint8_t *p,
                                                                size_t len)
{
    uint64_t c0 = crc;
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c0 = _mm_crc32_u8((uint32_t)c0, *p++);
        len--;
    }
    while (len >= 3 * LANE_LONG) {
        uint64_t c1 = 0, c2 = 0;
        for (const uint8_t *end = p + LANE_LONG; p < end; p += 8) {
            c0 = _mm_crc32_u64(c0, load_le64(p));
            c1 = _mm_crc32_u64(c1, load_le64(p + LANE_LONG));
            c2 = _mm_crc32_u64(c2, load_le64(p + 2 * LANE_LONG));
        }
        c0 = shift_register(shift_long, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = shift_register(shift_long, (uint32_t)c0) ^ (uint32_t)c2;
        p += 2 * LANE_LONG;
        len -= 3 * LANE_LONG;
    }
    while (len >= 3 * LANE_SHORT) {
        uint64_t c1 = 0, c2 = 0;
        for (const uint8_t *end = p + LANE_SHORT; p < end; p += 8) {
            c0 = _mm_crc32_u64(c0, load_le64(p));
            c1 = _mm_crc32_u64(c1, load_le64(p + LANE_SHORT));
            c2 = _mm_crc32_u64(c2, load_le64(p + 2 * LANE_SHORT));
        }
        c0 = shift_register(shift_short, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = shift_register(shift_short, (uint32_t)c0) ^ (uint32_t)c2;
        p += 2 * LANE_SHORT;
        len -= 3 * LANE_SHORT;
    }
    while (len >= 8) {
        c0 = _mm_crc32_u64(c0, load_le64(p));
        p += 8;
        len -= 8;
    }
    while (len-- > 0)
        c0 = _mm_crc32_u8((uint32_t)c0, *p++);
    return (uint32_t)c0;
}
#endif

__attribute__((constructor)) static void crc32c_init(void)
{
    for (uint32_t byte = 0; byte < 256; byte++) {
        uint32_t reg = byte;
        for (int i = 0; i < 8; i++)
            reg = (reg & 1) ? (reg >> 1) ^ CRC32C_POLY : reg >> 1;
        table[0][byte] = reg;
    }
    for (int k = 1; k < 8; k++)
        for (int byte = 0; byte < 256; byte++)
            table[k][byte] = (table[k - 1][byte] >> 8) ^ table[0][table[k - 1][byte] & 0xff];
    build_shift_table(shift_long, LANE_LONG);
    build_shift_table(shift_short, LANE_SHORT);
#ifdef CRC32C_HAVE_HW
    __builtin_cpu_init();
    hw_available = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
}

uint32_t crc32c_update(uint32_t crc, const void *buf, size_t len)
{
#ifdef CRC32C_HAVE_HW
    if (hw_available)
        return ~hardware_raw(~crc, buf, len);
#endif
    return ~software_raw(~crc, buf, len);
}

uint32_t crc32c_update_software(uint32_t crc, const void *buf, size_t len)
{
    return ~software_raw(~crc, buf, len);
}

int crc32c_hardware_available(void)
{
    return hw_available;
}
