"""Multipart uploads streamed to disk: a file of hundreds of MiB never sits in memory, and the
event loop only parses; every write to disk runs in a thread, a megabyte or more at a time.

Each file is named `leadscore-upload-<pid>-<uuid><suffix>` after the process that owns it, so
that files left behind by a worker killed mid-upload or mid-training can be told apart (from
each other's and from anything else in the directory) and swept: see `UploadSweeper`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final, Literal

from pydantic import TypeAdapter, ValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from leadscore.core.errors import InvalidInputError, PayloadTooLargeError
from leadscore.core.lifecycle import Background, Periodic

if TYPE_CHECKING:  # a typing-only name of python-multipart
    from python_multipart.multipart import MultipartCallbacks

log = logging.getLogger(__name__)

#: Bytes gathered before one write to disk (in a thread): few thread hops, little memory.
WRITE_CHUNK: Final = 1 << 20
#: How every upload file's name begins: the sweep removes nothing else.
PREFIX: Final = "leadscore-upload-"
#: An orphan is removed once untouched this long: far past any upload's last write, and a file
#: whose owner still runs is kept however old.
ORPHAN_SECONDS: Final = 3600.0
#: How often a worker sweeps (it also sweeps once when it starts).
SWEEP_SECONDS: Final = 900.0
_SUFFIX: Final = re.compile(r"\.[a-z0-9]{1,16}")
_NAME: Final = re.compile(re.escape(PREFIX) + r"(\d{1,10})-[0-9a-f]{32}(?:\.[a-z0-9]{1,16})?")
_BOOL: Final = TypeAdapter(bool)


def upload_name(suffix: str) -> str:
    """A new upload file's name: ours (the prefix), its owner (this process) and unique."""
    kept = suffix if _SUFFIX.fullmatch(suffix) else ""
    return f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex}{kept}"


def _started_at(pid: int) -> float | None:
    """When process `pid` started (epoch seconds) from /proc; None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        # The fields after the command name (which may hold spaces): field 22 is the start.
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _owner_alive(pid: int, written_at: float) -> bool:
    """Whether the process that wrote a file at `written_at` may still run (so may still need
    the file): its pid is alive and that process is not a newer one that reused the pid."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    started = _started_at(pid)
    return started is None or started <= written_at + 1.0  # btime has whole seconds


def sweep_orphans(
    directory: Path, older_than: float = ORPHAN_SECONDS, now: float | None = None
) -> list[Path]:
    """Remove the upload files in `directory` untouched for `older_than` seconds whose owning
    process is gone; anything not named as an upload is never touched. What was removed."""
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        match = _NAME.fullmatch(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        try:
            written_at = entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:  # removed meanwhile (its job ended, another worker swept)
            continue
        if now - written_at < older_than or _owner_alive(int(match[1]), written_at):
            continue
        path = Path(entry.path)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # one file we may not remove must not stop the sweep
            log.warning("uploads: cannot remove the orphan %s: %s", path, exc)
            continue
        removed.append(path)
    if removed:
        log.warning(
            "uploads: removed %d orphaned upload file(s) (their worker stopped before its job "
            "ended): %s", len(removed), ", ".join(p.name for p in removed[:5]),
        )  # fmt: skip
    return removed


class UploadSweeper(Background):
    """Sweeps orphaned upload files once at start and then every `every` seconds, in a thread."""

    def __init__(
        self, directory: Path, *, older_than: float = ORPHAN_SECONDS, every: float = SWEEP_SECONDS
    ) -> None:
        self.directory = directory
        self.older_than = older_than
        self._ticker = Periodic("upload-sweep", every, self.sweep)

    async def sweep(self) -> list[Path]:
        """One sweep off the event loop."""
        return await asyncio.to_thread(sweep_orphans, self.directory, self.older_than)

    async def start(self) -> None:
        """Sweep what a killed worker left, then keep sweeping."""
        await self.sweep()
        self._ticker.start()

    async def close(self) -> None:
        """Stop sweeping."""
        await self._ticker.close()


@dataclass(frozen=True)
class Upload:
    """A file part written to disk: where it is, and the name the client gave it (the only
    name errors may show: the path is the server's)."""

    path: Path
    filename: str


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    kind: Literal["disk", "memory", "ignored"] = "ignored"
    headers: dict[bytes, bytes] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)
    path: Path | None = None
    handle: BinaryIO | None = None
    ended: bool = False

    def write(self, chunk: bytes) -> None:
        """Append to the part's file (opened on first write), closing it at the part's end."""
        assert self.path is not None
        if self.handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = self.path.open("xb")
        self.handle.write(chunk)
        if self.ended:
            self.handle.close()

    def discard(self) -> None:
        """Close and remove what was written."""
        if self.handle is not None:
            self.handle.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class Form:
    """A parsed multipart form: files on disk, small parts in memory."""

    def __init__(self) -> None:
        self.parts: list[_Part] = []

    def named(self, name: str) -> _Part | None:
        """The part sent under `name`, if any."""
        return next((p for p in self.parts if p.name == name), None)

    def file(self, name: str) -> Upload:
        """A file part that was written to disk; refused when absent."""
        part = self.named(name)
        if part is None or part.path is None:
            raise InvalidInputError(f"`{name}`: a file is required")
        return Upload(part.path, part.filename or "")

    def data(self, name: str) -> tuple[str, bytes] | None:
        """A part kept in memory, with its file name (empty for a plain field), if sent."""
        part = self.named(name)
        return None if part is None else (part.filename or "", bytes(part.data))

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean field (true/false, 1/0, yes/no, on/off)."""
        sent = self.data(name)
        if sent is None:
            return default
        try:
            return _BOOL.validate_python(sent[1].decode("utf-8", "replace"))
        except ValidationError as exc:
            raise InvalidInputError(f"`{name}`: expected true or false") from exc

    def discard(self) -> None:
        """Remove every file written for this form."""
        for part in self.parts:
            part.discard()


class _Receiver:
    """The parser's callbacks: they run inside `parser.write`, so they only record; the writes
    to disk happen after each chunk, in a thread."""

    def __init__(
        self,
        form: Form,
        directory: Path,
        to_disk: Mapping[str, Callable[[str], object]],
        in_memory: Mapping[str, int],
    ) -> None:
        self.form = form
        self.directory = directory
        self.to_disk = to_disk
        self.in_memory = in_memory
        self.part = _Part()
        self.header_name = bytearray()
        self.header_value = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            # python-multipart bounds a part's headers (8 of at most 4 KiB each).
            "on_header_field": lambda data, start, end: self.header_name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self.header_value.extend(data[start:end]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_end(self) -> None:
        self.part.headers[bytes(self.header_name).lower()] = bytes(self.header_value)
        self.header_name.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        part = self.part
        _, options = parse_options_header(part.headers.get(b"content-disposition"))
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        part.filename = None if filename is None else filename.decode("utf-8", "replace")
        known = part.name in self.to_disk or part.name in self.in_memory
        if known and self.form.named(part.name) is not None:
            raise InvalidInputError(f"`{part.name}` was sent twice")
        if part.name in self.to_disk:
            self.to_disk[part.name](part.filename or "")  # refuse a bad name before writing
            part.kind = "disk"
            part.path = self.directory / upload_name(Path(part.filename or "").suffix.lower())
        elif part.name in self.in_memory:
            part.kind = "memory"
        if known:
            self.form.parts.append(part)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        if part.kind == "ignored":
            return
        part.data.extend(data[start:end])
        limit = self.in_memory.get(part.name, 0)
        if part.kind == "memory" and len(part.data) > limit:
            raise PayloadTooLargeError(f"`{part.name}`: more than {limit:,} bytes")

    def on_part_end(self) -> None:
        self.part.ended = True

    async def flush(self) -> None:
        """Write what the last chunk brought to disk, in a thread, a megabyte at a time; else
        let other requests in (a buffered body arrives without the loop ever waiting)."""
        wrote = False
        for part in self.form.parts:
            if part.kind == "disk" and (len(part.data) >= WRITE_CHUNK or part.ended):
                if part.handle is not None and part.handle.closed:
                    continue
                chunk = bytes(part.data)
                part.data.clear()
                await asyncio.to_thread(part.write, chunk)
                wrote = True
        if not wrote:
            await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def receive_form(
    request: Request,
    directory: Path,
    *,
    to_disk: Mapping[str, Callable[[str], object]],
    in_memory: Mapping[str, int],
) -> AsyncIterator[Form]:
    """Parse a multipart body as it arrives: parts named in `to_disk` are written to files in
    `directory` (each after its check of the client's file name), those in `in_memory` (files
    or plain fields) are kept up to their byte limit (413 beyond), anything else is skipped.

    If the block raises (or the body is refused or cut short), every file is removed; if it
    ends normally the files are the caller's to remove.
    """
    _, params = parse_options_header(request.headers.get("content-type"))
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data" or b"boundary" not in params:
        raise InvalidInputError(
            "the body must be multipart/form-data (the form fields: "
            + ", ".join(f"`{name}`" for name in [*to_disk, *in_memory])
            + ")"
        )
    form = Form()
    receiver = _Receiver(form, directory, to_disk, in_memory)
    try:
        try:
            parser = MultipartParser(params[b"boundary"], receiver.callbacks())
            async for chunk in request.stream():
                parser.write(chunk)
                await receiver.flush()
            parser.finalize()
        except FormParserError as exc:
            raise InvalidInputError(f"malformed multipart body: {exc}") from exc
        await receiver.flush()
        if any(part.kind == "disk" and not part.ended for part in form.parts):
            raise InvalidInputError("malformed multipart body: it ends inside a file")
        yield form
    except BaseException:
        form.discard()
        raise
