"""The shipped deploy/nginx.conf, run unprivileged in front of replicas on loopback ports."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
_SERVER = re.compile(r"^(?P<indent>[ \t]*)server\s+(?P<address>\S+)(?P<params>[^;]*);", re.M)


def _marked(text: str, name: str) -> re.Match[str]:
    """The lines between `# --- NAME: begin ---` and `# --- NAME: end ---`."""
    found = re.search(
        rf"# --- {name}: begin ---\n(?P<body>.*?)[ \t]*# --- {name}: end ---", text, re.S
    )
    if found is None:
        raise ValueError(f"nginx.conf lacks the {name} markers")
    return found


def _replace(text: str, found: re.Match[str], body: str) -> str:
    return text[: found.start("body")] + body + text[found.end("body") :]


def nginx_binary() -> str | None:
    """Debian's nginx (in /usr/sbin, often not on a user's PATH), or whichever is on PATH."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def proxy_config(text: str, replicas: list[str], listen: str) -> str:
    """The shipped config with only the replica addresses and the listen address replaced.

    Each shipped `server` line keeps its parameters (max_fails, fail_timeout, …) for every
    replica; `resolve` is dropped: it re-resolves a DNS name, and these are IP addresses.
    """
    block = _marked(text, "replicas")
    template = _SERVER.search(block["body"])
    if template is None:
        raise ValueError("nginx.conf has no server line between the replicas markers")
    params = " ".join(p for p in template["params"].split() if p != "resolve")
    indent = template["indent"]
    text = _replace(text, block, "".join(f"{indent}server {a} {params};\n" for a in replicas))
    where = _marked(text, "listen")
    indent = where["body"][: len(where["body"]) - len(where["body"].lstrip())]
    return _replace(text, where, f"{indent}listen {listen};\n")


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Nginx:
    """nginx with the shipped config, unprivileged, every file in `directory`."""

    def __init__(self, directory: Path, replicas: list[str], binary: str) -> None:
        """Write the config (replica addresses substituted) and start nginx on a free port."""
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        directory.mkdir(parents=True, exist_ok=True)
        self.conf = directory / "nginx.conf"
        self.conf.write_text(
            proxy_config(NGINX_CONF.read_text(), replicas, f"127.0.0.1:{self.port}")
        )
        self.access_log = directory / "access.log"
        self.error_log = directory / "error.log"
        command = [binary, "-p", f"{directory}/", "-c", str(self.conf), "-e", "stderr"]
        check = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx refused the config: {check.stderr}")
        with self.access_log.open("w") as out, self.error_log.open("w") as err:
            self.process = subprocess.Popen(
                [*command, "-g", "daemon off;"],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: master and workers stop together
            )
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"nginx did not start: {self.error_log.read_text()}"
                    ) from exc
                time.sleep(0.05)

    def log_lines(self) -> list[str]:
        """The access log so far (the shipped format: request id, upstream, statuses)."""
        return self.access_log.read_text().splitlines()

    def stop(self) -> None:
        """Fast shutdown (SIGTERM), then wait; never leaves the master or a worker behind."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
