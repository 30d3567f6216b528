"""Checks that protos/ are ready for languages other than Python (`make codegen-check`); any error fails.

1. Every file carries the language options common.proto describes, derived from its package, and every top-level
   type name is unique across the packages (they share one Objective-C prefix).
2. Into a temporary directory, Debian's protoc (protobuf-compiler) generates Java, C# and Objective-C, and with
   protoc-gen-go and protoc-gen-go-grpc the Go messages and gRPC clients and servers.
3. javac compiles the Java against Debian's protobuf-java, which must be the protoc's own release (Java code from
   one protobuf release does not compile against another's runtime); `go build` compiles the Go against Debian's
   Go packages in GOPATH mode, so no Go module proxy is needed.

grpcio-tools' protoc generates only Python, so the other languages need Debian's tools (`make codegen-tools`). A
missing tool skips what needs it, saying so. C# and Objective-C are generated but not compiled (no dotnet or clang
here); Java gets messages only (grpc-java's protoc plugin is not packaged by Debian).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc as grpc_protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
GO_MODULE = "plasma.org/plasma"
OBJC_PREFIX = "PLS"
PROTOBUF_JAR = Path(os.environ.get("PROTOBUF_JAVA_JAR", "/usr/share/java/protobuf.jar"))
# Debian's Go packages (golang-google-protobuf-dev, golang-google-grpc-dev) live in this GOPATH.
DEBIAN_GOPATH = Path("/usr/share/gocode")


class CheckFailed(Exception):
    """A step failed; the message says which and why."""


def expected_options(file: descriptor_pb2.FileDescriptorProto) -> dict[str, object]:
    """The options a file of package plasma.<area>.v1 must set, as common.proto describes them."""
    parts = file.package.split(".")
    stem = Path(file.name).stem
    return {
        "csharp_namespace": ".".join(p.capitalize() for p in parts),
        "go_package": f"{GO_MODULE}/gen/go/{'/'.join(parts)};{''.join(parts[-2:])}",
        "java_multiple_files": True,
        "java_outer_classname": "".join(w.capitalize() for w in stem.split("_")) + "Proto",
        "java_package": f"org.{file.package}",
        "objc_class_prefix": OBJC_PREFIX,
    }


def check_descriptors(files: list[descriptor_pb2.FileDescriptorProto]) -> list[str]:
    problems = []
    owners: dict[str, list[str]] = defaultdict(list)
    for file in files:
        set_options = {field.name: value for field, value in file.options.ListFields()}
        for option, want in expected_options(file).items():
            if (got := set_options.get(option)) != want:
                problems.append(f"{file.name}: option {option} is {got!r}, expected {want!r}")
        for name in [*(m.name for m in file.message_type), *(e.name for e in file.enum_type),
                     *(s.name for s in file.service)]:
            owners[name].append(file.package)
    for name, packages in sorted(owners.items()):
        if len(set(packages)) > 1:
            problems.append(f"type name {name} is in {', '.join(sorted(set(packages)))}: Objective-C names it "
                            f"{OBJC_PREFIX}{name} in each")
    return problems


def descriptors(protos: list[Path], out: Path) -> list[descriptor_pb2.FileDescriptorProto]:
    well_known = Path(grpc_protoc.__file__).parent / "_proto"
    path = out / "protos.binpb"
    if grpc_protoc.main(["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--descriptor_set_out={path}",
                         *map(str, protos)]) != 0:
        raise CheckFailed("protoc could not read protos/ (its errors are above)")
    return list(descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes()).file)


def run(args: list[str | Path], what: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, check=False)
    if done.returncode != 0:
        raise CheckFailed(f"{what} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return (done.stdout + done.stderr).strip()


def missing(*tools: str) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]


def count(directory: Path, suffix: str) -> int:
    return sum(1 for _ in directory.rglob(f"*{suffix}"))


def jar_version(jar: Path) -> str:
    """Debian's protobuf.jar links to protobuf-<version>.jar; its manifest names no version."""
    found = re.fullmatch(r"protobuf(?:-java)?-(\d[\w.]*)\.jar", jar.resolve().name)
    return found.group(1) if found else "of unknown release"


def java(protos: list[Path], out: Path) -> str:
    sources, classes = out / "java", out / "java-classes"
    sources.mkdir()
    run(["protoc", f"-I{PROTO_ROOT}", f"--java_out={sources}", *protos], "protoc --java_out")
    generated = f"{count(sources, '.java')} files"
    if missing("javac") or not PROTOBUF_JAR.is_file():
        return f"{generated}; NOT compiled: javac or {PROTOBUF_JAR} (libprotobuf-java) is missing"
    protoc_version = run(["protoc", "--version"], "protoc --version").split()[-1]
    runtime = jar_version(PROTOBUF_JAR)
    if runtime[0].isdigit() and runtime != protoc_version:
        return f"{generated}; NOT compiled: protobuf-java {runtime} is not protoc's release {protoc_version}"
    # A short-lived javac starts faster without the optimizing JIT.
    run(["javac", "-J-XX:TieredStopAtLevel=1", "-nowarn", "-encoding", "UTF-8", "-d", classes,
         "-cp", PROTOBUF_JAR, *sorted(sources.rglob("*.java"))], f"javac against protobuf-java {runtime}")
    return f"{generated}; compiled by javac against protobuf-java {runtime}: {count(classes, '.class')} classes"


def go(protos: list[Path], out: Path) -> str:
    gopath = out / "go"
    sources = gopath / "src"
    sources.mkdir(parents=True)
    run(["protoc", f"-I{PROTO_ROOT}", f"--go_out={sources}", f"--go-grpc_out={sources}", *protos],
        "protoc --go_out --go-grpc_out")
    generated = f"{count(sources, '.pb.go')} files (messages and gRPC stubs)"
    if missing("go") or not (DEBIAN_GOPATH / "src" / "google.golang.org" / "grpc").is_dir():
        return f"{generated}; NOT built: go or {DEBIAN_GOPATH} (golang-google-grpc-dev) is missing"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": f"{gopath}{os.pathsep}{DEBIAN_GOPATH}", "GOPROXY": "off",
           "GOFLAGS": ""}
    run(["go", "build", f"{GO_MODULE}/gen/go/..."], "go build", cwd=out, env=env)
    return f"{generated}; built by {run(['go', 'version'], 'go version').split()[2]} in GOPATH mode"


def csharp_and_objc(protos: list[Path], out: Path) -> str:
    csharp, objc = out / "csharp", out / "objc"
    csharp.mkdir()
    objc.mkdir()
    run(["protoc", f"-I{PROTO_ROOT}", f"--csharp_out={csharp}", f"--objc_out={objc}", *protos],
        "protoc --csharp_out --objc_out")
    return f"C# {count(csharp, '.cs')} files, Objective-C {count(objc, '.pbobjc.m')} .m files; generated only"


def main() -> int:
    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    with tempfile.TemporaryDirectory(prefix="plasma-codegen-") as tmp:
        out = Path(tmp)
        try:
            files = descriptors(protos, out)
            problems = check_descriptors(files)
            if problems:
                raise CheckFailed("language options:\n  " + "\n  ".join(problems))
            print(f"options: {len(files)} files, every language option set; top-level type names unique")
            if missing("protoc"):
                print("java, go, C#, Objective-C: SKIPPED: Debian's protoc (protobuf-compiler) is missing; "
                      "make codegen-tools installs it", file=sys.stderr)
                return 0
            version = run(["protoc", "--version"], "protoc --version")
            steps = [("java", java, []), ("go", go, ["protoc-gen-go", "protoc-gen-go-grpc"]),
                     ("C# and Objective-C", csharp_and_objc, [])]
            for name, step, plugins in steps:
                started = time.monotonic()
                if missing(*plugins):
                    print(f"{name}: SKIPPED: {', '.join(missing(*plugins))} missing; make codegen-tools installs "
                          "them", file=sys.stderr)
                    continue
                print(f"{name} ({version}): {step(protos, out)} [{time.monotonic() - started:.1f} s]")
        except CheckFailed as exc:
            print(f"codegen check failed: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
