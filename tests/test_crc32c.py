"""CRC32C: standard vectors on both paths, the paths against each other, incremental use."""

from __future__ import annotations

import platform
import random
from pathlib import Path

import pytest

from pyraftkv.crc32c import crc32c, crc32c_software, hardware_accelerated

BOTH_PATHS = pytest.mark.parametrize(
    "checksum", [crc32c, crc32c_software], ids=["fast", "software"]
)

# RFC 3720 (iSCSI) appendix B.4 and the common "check" value of the CRC catalogue.
VECTORS = [
    (b"", 0x00000000),
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (
        bytes.fromhex(
            "01c00000000000000000000000000000"
            "14000000000004000000001400000018"
            "28000000000000000200000000000000"
        ),
        0xD9963A56,
    ),
]


@BOTH_PATHS
@pytest.mark.parametrize(("data", "expected"), VECTORS)
def test_standard_vectors(checksum, data: bytes, expected: int) -> None:
    assert checksum(data) == expected


@BOTH_PATHS
def test_incremental_equals_one_shot(checksum) -> None:
    rng = random.Random(7)
    data = rng.randbytes(100_000)
    for cut in (0, 1, 7, 8, 9, 767, 768, 24_575, 24_576, 50_001, 100_000):
        assert checksum(data[cut:], checksum(data[:cut])) == checksum(data)


def test_paths_agree_on_random_lengths_and_alignments() -> None:
    rng = random.Random(2024)
    block = bytearray(rng.randbytes(200_000))
    view = memoryview(block)
    for _ in range(400):
        start = rng.randrange(0, 64)
        length = rng.choice(
            [rng.randrange(0, 64), rng.randrange(0, 3000), rng.randrange(0, 80_000)]
        )
        seed = rng.randrange(0, 1 << 32)
        piece = view[start : start + length]
        assert crc32c(piece, seed) == crc32c_software(piece, seed), (start, length, seed)


def test_lane_boundaries_agree() -> None:
    # Lengths around the interleaved block sizes (3 x 256 and 3 x 8192) on every alignment.
    data = random.Random(3).randbytes(3 * 8192 * 2 + 64)
    for length in (767, 768, 769, 1535, 1536, 24_575, 24_576, 24_577, 49_152):
        for start in range(8):
            piece = data[start : start + length]
            assert crc32c(piece) == crc32c_software(piece), (start, length)


def test_accepts_every_contiguous_buffer_type() -> None:
    data = b"pyraftkv write-ahead log"
    expected = crc32c(data)
    assert crc32c(bytearray(data)) == expected
    assert crc32c(memoryview(data)) == expected
    assert crc32c(memoryview(b"xx" + data)[2:]) == expected


def test_detects_a_single_flipped_bit() -> None:
    data = bytearray(random.Random(5).randbytes(4096))
    good = crc32c(data)
    data[1000] ^= 0x10
    assert crc32c(data) != good


@pytest.mark.parametrize("bad_value", [-1, 1 << 32])
def test_rejects_out_of_range_value(bad_value: int) -> None:
    with pytest.raises(ValueError, match="crc32c value"):
        crc32c(b"abc", bad_value)
    with pytest.raises(ValueError, match="crc32c value"):
        crc32c_software(b"abc", bad_value)


def test_rejects_non_buffers() -> None:
    with pytest.raises(TypeError):
        crc32c("text is not bytes")  # type: ignore[arg-type]


def test_hardware_path_is_used_when_the_cpu_has_sse42() -> None:
    flags = Path("/proc/cpuinfo").read_text()
    is_x86_64 = platform.machine() in ("x86_64", "AMD64")
    assert hardware_accelerated() == (" sse4_2" in flags and is_x86_64)
