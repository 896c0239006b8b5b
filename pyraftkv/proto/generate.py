"""Regenerates the *_pb2.py modules from the .proto files next to this one.

Run from the repository root after editing a .proto: ``python -m pyraftkv.proto.generate``
(needs grpcio-tools, a development-only dependency; the generated files are committed).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(ROOT)) for p in Path(__file__).parent.glob("*.proto"))
    args = ["protoc", f"-I{ROOT}", f"--python_out={ROOT}", f"--pyi_out={ROOT}", *protos]
    return protoc.main(args)


if __name__ == "__main__":
    sys.exit(main())
