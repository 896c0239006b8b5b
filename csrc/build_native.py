"""cffi builder for pyraftkv._native.

Every component is three files in csrc/: NAME.h (the C header), NAME.c (the code) and
NAME.cdef (the declarations cffi exposes to Python). The builder takes every *.cdef it
finds, so adding a component never means editing this file.
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
COMPONENTS = sorted(p.stem for p in HERE.glob("*.cdef"))

ffibuilder = FFI()
ffibuilder.cdef("\n".join((HERE / f"{name}.cdef").read_text() for name in COMPONENTS))
ffibuilder.set_source(
    "pyraftkv._native",
    "\n".join(f'#include "{name}.h"' for name in COMPONENTS),
    sources=[str((HERE / f"{name}.c").relative_to(HERE.parent)) for name in COMPONENTS],
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
