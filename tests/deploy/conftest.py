"""The deployment's topology for real: nginx (the shipped config) in front of two replicas."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..api.conftest import Deployment, ServeProcess, deploy, serve_process
from .proxy import Nginx, nginx_binary

#: Scores from the tests must never meet the rate limit, whatever the replica they land on.
REPLICA_ENV = {"LEADSCORE_RATE_LIMIT_PER_MINUTE": "1000000"}


@pytest.fixture(scope="session")
def nginx_path() -> str:
    """nginx, which `make test` and CI install; skipped without it, except under CI."""
    binary = nginx_binary()
    if binary is None:
        message = "nginx is not installed (apt-get install nginx): no proxy to test"
        if os.environ.get("CI"):
            raise RuntimeError(f"{message}; CI must never skip the deployment test")
        pytest.skip(message)
    return binary


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Deployment:
    """PostgreSQL and Redis, freshly reset and migrated, shared by every replica."""
    return deploy("postgres-redis", tmp_path_factory.mktemp("replicas"), model_dir)


@pytest.fixture(scope="module")
def replicas(shared: Deployment) -> Iterator[list[ServeProcess]]:
    """Two replicas: separate `leadscore serve` processes on the same database and Redis."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(serve_process(shared, 1, **REPLICA_ENV)) for _ in range(2)]


@contextlib.contextmanager
def running_nginx(directory: Path, replicas: list[ServeProcess], binary: str) -> Iterator[Nginx]:
    """nginx in front of these replicas, stopped on exit."""
    proxy = Nginx(directory, [r.url.removeprefix("http://") for r in replicas], binary)
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def nginx(
    replicas: list[ServeProcess], nginx_path: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nginx]:
    """The shipped nginx.conf in front of both replicas."""
    with running_nginx(tmp_path_factory.mktemp("nginx"), replicas, nginx_path) as proxy:
        yield proxy
