"""Regenerates the Python stubs (with .pyi typing stubs) for every proto under protos/.

The stubs land in the `plasma` package (`plasma/<area>/v1/*_pb2*.py`), the one place every
component imports them from. CI re-runs this and fails if the tree changes.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def main() -> int:
    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    for area_dir in sorted({p.parent for p in protos}):
        out_dir = ROOT / area_dir.relative_to(PROTO_ROOT)
        if out_dir.exists():
            for stale in out_dir.iterdir():
                if stale.name.endswith(GENERATED_SUFFIXES):
                    stale.unlink()
        out_dir.mkdir(parents=True, exist_ok=True)
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={ROOT}",
        f"--pyi_out={ROOT}",
        f"--grpc_python_out={ROOT}",
        f"--mypy_grpc_out={ROOT}",
        *[str(p) for p in protos],
    ]
    if shutil.which("protoc-gen-mypy_grpc") is None:
        print("protoc-gen-mypy_grpc not on PATH: install the dev extra (mypy-protobuf)", file=sys.stderr)
        return 1
    code: int = protoc.main(args)
    if code != 0:
        return code
    # Every directory on the way to a stub must be a regular package.
    for stub in ROOT.glob("plasma/**/*_pb2.py"):
        for package_dir in stub.relative_to(ROOT).parents:
            if package_dir != Path("."):
                (ROOT / package_dir / "__init__.py").touch(exist_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
