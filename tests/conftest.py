"""Fixtures shared by every test tier.

Two capabilities are not on every machine: root with network namespaces (the
kernel tier) and a Chromium browser (the site tier). A test that needs one asks
for it with a fixture or a marker:

    def test_twin(requires_root_netns): ...          # fixture
    @pytest.mark.requires_chromium                   # marker, same effect
    def test_page(): ...

(The markers are registered in pyproject.toml.) Every test under tests/kernel/ gets
`requires_root_netns` automatically; the browser fixtures of tests/site/ depend on
`requires_chromium` (the site tier's static checks run without a browser).

On a machine without the capability such a test is SKIPPED, and the reason is
shown in pytest's summary (`-ra`). Under CI (environment variable CI=true) the
same situation FAILS instead: CI must prove every tier, never skip one.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def in_ci() -> bool:
    """True when running under CI (CI=true, as GitHub Actions, GitLab CI and .ci/run set it)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip the current test with `reason`, or fail it under CI."""
    if in_ci():
        pytest.fail(f"required in CI (CI=true) but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


@functools.cache
def root_netns_problem() -> str | None:
    """Why network-namespace tests cannot run here, or None if they can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (network namespaces); run as root or in the devcontainer"
    ip = shutil.which("ip")
    if ip is None:
        return "needs the `ip` command (Debian package iproute2)"
    name = f"k8snet101-probe-{uuid.uuid4().hex[:8]}"
    try:
        add = subprocess.run(
            [ip, "netns", "add", name], check=False, capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` failed: {exc}"
    if add.returncode != 0:
        return f"cannot create a network namespace: {add.stderr.strip() or add.returncode} (needs CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    subprocess.run([ip, "netns", "delete", name], check=False, capture_output=True, timeout=20)
    return None


def chromium_path() -> str | None:
    """The Chromium executable: $CHROMIUM if set, else the first one on PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@functools.cache
def chromium_problem() -> str | None:
    """Why browser tests cannot run here, or None if they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs the playwright Python package (requirements-test.txt)"
    if chromium_path() is None:
        return "needs Chromium (Debian package chromium, or set CHROMIUM=/path/to/chrome)"
    return None


@pytest.fixture(scope="session")
def requires_root_netns() -> None:
    """Skip (or fail under CI) unless we are root and can create network namespaces."""
    problem = root_netns_problem()
    if problem:
        skip_or_fail(problem)


@pytest.fixture(scope="session")
def requires_chromium() -> str:
    """Skip (or fail under CI) unless Chromium and playwright are available; returns its path."""
    problem = chromium_problem()
    if problem:
        skip_or_fail(problem)
    return chromium_path()


@pytest.fixture(scope="session")
def unavailable():
    """`skip_or_fail` for a test to call itself: skips with the reason, or fails under CI."""
    return skip_or_fail


@pytest.fixture(scope="session")
def requires_tools():
    """A function `need((command, debian_package), ...)` that skips (or fails under CI) unless each
    command is installed."""

    def need(*tools: tuple[str, str]) -> None:
        for tool, package in tools:
            if shutil.which(tool) is None:
                skip_or_fail(f"needs the `{tool}` command (Debian package {package})")

    return need


@pytest.fixture(scope="session")
def requires_openssl() -> str:
    """Skip (or fail under CI) unless the `openssl` command is installed; returns its path."""
    path = shutil.which("openssl")
    if path is None:
        skip_or_fail("needs the `openssl` command (Debian package openssl)")
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kernel_dir = ROOT / "tests" / "kernel"
    for item in items:
        if Path(str(item.path)).is_relative_to(kernel_dir):
            item.add_marker(pytest.mark.requires_root_netns)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("requires_root_netns"):
        problem = root_netns_problem()
        if problem:
            skip_or_fail(problem)
    if item.get_closest_marker("requires_chromium"):
        problem = chromium_problem()
        if problem:
            skip_or_fail(problem)
