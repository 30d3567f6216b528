"""`docker compose up` from a fresh clone builds its own images: every image in deploy/docker-compose.yml has a
build section over the source tree. Here, as in `make images`, the packages come from the host's wheelhouse
served over HTTP (no registry and no index inside a build on these machines); a user with a network gets them
from PyPI through the same build sections, only the build arguments differ.

A copy of exactly the tracked files (what `git clone` gives, with this tree's uncommitted edits) builds under a
tag of its own, and its images must be the very ones `make images` built: the same Dockerfiles and arguments over
the same sources hit the same build cache, layer for layer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.e2e import dockerutil

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

IMAGES = ("simulator", "trainer", "compiler", "edge", "registry")


def fresh_clone(destination: Path) -> Path:
    """The tracked files of this repository, as a clone would have them: no wheelhouse, venv or build output."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=dockerutil.REPO, capture_output=True, check=True)
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = dockerutil.REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def test_a_fresh_clone_builds_the_images_through_the_compose_build_sections(images: str, tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path / "clone")
    assert not (clone / "wheelhouse").exists() and not (clone / ".venv").exists()
    tag = f"fresh-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PLASMA_TAG": tag, "WHEELHOUSE": str(dockerutil.REPO / "wheelhouse"),
           "COMPOSE_PROJECT_NAME": f"plasma-{tag}"}
    try:
        done = subprocess.run(["deploy/build_images.sh"], cwd=clone, env=env, capture_output=True, text=True,
                              timeout=3000, check=False)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        for line in done.stdout.splitlines():
            if line.startswith("::: images: built in"):
                dockerutil.FIGURES["images from a fresh clone (build cache warm)"] = line.removeprefix("::: images: ")
        for name in IMAGES:
            built, made = (dockerutil.attrs(f"plasma/{name}:{t}")["Id"] for t in (tag, images))
            assert built == made, f"plasma/{name} from the fresh clone differs from make images' image"
    finally:
        for name in IMAGES:
            subprocess.run(["docker", "image", "rm", f"plasma/{name}:{tag}"], capture_output=True, check=False)
