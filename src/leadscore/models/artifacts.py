"""A model artifact as bytes for the registry's table, and back into a directory."""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from pathlib import Path

from leadscore.core.errors import ModelArtifactError


def pack_artifact(directory: Path) -> bytes:
    """A model directory as tar.gz bytes (flat: the artifact has no subdirectories)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(directory.iterdir()):
            if path.is_file():
                archive.add(path, arcname=path.name)
    return buffer.getvalue()


def unpack_artifact(data: bytes, directory: Path) -> Path:
    """Write an artifact's files into `directory`, atomically and only plain file names."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive.getmembers():
                if not member.isfile() or Path(member.name).name != member.name:
                    raise ModelArtifactError(f"unexpected entry in model artifact: {member.name}")
                source = archive.extractfile(member)
                assert source is not None
                (staging / member.name).write_bytes(source.read())
        try:
            staging.rename(directory)
        except OSError:
            if not (directory / "card.json").is_file():
                raise
            shutil.rmtree(staging)  # another worker unpacked the same version meanwhile
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory
