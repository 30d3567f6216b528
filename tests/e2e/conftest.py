"""Container end-to-end tests: build the images (make images), run them for real, clean up after.

Skipped only when docker itself is unavailable (no CLI or no engine); everything else is a failure.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.e2e import dockerutil


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if dockerutil.FIGURES:
        terminalreporter.section("container figures")
        for name, value in dockerutil.FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def images() -> str:
    """Builds (or confirms up to date) every image with `make images`; returns the tag.
    PLASMA_E2E_BUILD=0 uses the images as they are (e.g. while iterating on these tests)."""
    reason = dockerutil.docker_unavailable()
    if reason is not None:
        pytest.skip(reason)
    if os.environ.get("PLASMA_E2E_BUILD", "1") == "0":
        return dockerutil.TAG
    started = time.monotonic()
    done = dockerutil.run(["make", "--no-print-directory", "images"], timeout=3600)
    dockerutil.FIGURES["make images (in the test; a no-op when CI built them first)"] = (
        f"{time.monotonic() - started:.0f} s")
    for line in done.stdout.splitlines():
        if line.startswith("::: images: built in"):
            dockerutil.FIGURES["image build"] = line.removeprefix("::: images: ")
    return dockerutil.TAG
