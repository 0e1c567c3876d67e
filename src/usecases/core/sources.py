"""Source archives: found in an offline mirror or downloaded, SHA-256 verified, extracted
deterministically so that `data/raw` is byte-identical on every machine.

Mirror folders are searched in this order:
1. `$ZOO_MIRROR` (one or more folders separated by `os.pathsep`, e.g. a USB drive or LAN share);
2. `paths.mirror` in the config;
3. the `datasets/` folder of a `shared/` directory beside the repository, when it exists;
4. the user cache (`$XDG_CACHE_HOME/usecase-zoo/mirror`), where downloads are kept.
Within a mirror folder an archive is looked for at `<mirror>/<dataset>/<file>` then `<mirror>/<file>`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from usecases.core.io import atomic_path, sha256_file, write_json

log = logging.getLogger(__name__)

MIRROR_ENV = "ZOO_MIRROR"
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


class SourceError(RuntimeError):
    """A source archive is missing, corrupt or unsafe."""


@dataclass(frozen=True)
class Source:
    file: str  # archive or file name, as found in a mirror
    sha256: str
    dataset: str = ""  # sub-folder of a mirror that holds it (e.g. "ibean_beans")
    url: str | None = None  # canonical download location; None when only mirrors carry it
    homepage: str | None = None  # where the data come from, for people
    extract: bool = True  # unpack archives; copy plain files as they are

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError(f"Source {self.file!r}: sha256 must be 64 lowercase hex digits")
        if Path(self.file).name != self.file:
            raise ValueError(f"Source {self.file!r}: file must be a bare name, not a path")


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "usecase-zoo"


def mirror_dirs(
    config_mirror: str | os.PathLike | None = None, root: Path | None = None
) -> list[Path]:
    """Folders to search for archives, in priority order."""
    dirs: list[Path] = []
    env = os.environ.get(MIRROR_ENV)
    if env:
        dirs += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    if config_mirror:
        dirs.append(Path(config_mirror).expanduser())
    root = root or Path.cwd()
    shared = root.resolve().parent / "shared" / "datasets"
    if shared.is_dir():
        dirs.append(shared)
    dirs.append(user_cache_dir() / "mirror")
    return dirs


def locate(source: Source, mirrors: list[Path]) -> Path | None:
    for m in mirrors:
        for candidate in (m / source.dataset / source.file, m / source.file):
            if candidate.is_file():
                return candidate
    return None


def verify(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise SourceError(
            f"{path}: SHA-256 mismatch (expected {expected}, got {actual}). "
            "The file is corrupt or not the archive this config names; refusing to use it."
        )


def download(source: Source, dest_dir: Path) -> Path:
    if not source.url:
        raise SourceError(f"{source.file}: no URL to download from")
    dest = dest_dir / source.dataset / source.file
    log.info("downloading %s from %s", source.file, source.url)
    with atomic_path(dest) as tmp, urllib.request.urlopen(source.url, timeout=60) as r:  # noqa: S310
        with open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
        verify(tmp, source.sha256)
    return dest


def obtain(source: Source, mirrors: list[Path], offline: bool = False) -> Path:
    """Return a verified local copy of `source`: from a mirror, else downloaded from its URL."""
    found = locate(source, mirrors)
    if found is not None:
        verify(found, source.sha256)
        return found
    cache = user_cache_dir() / "mirror"
    if source.url and not offline:
        try:
            return download(source, cache)
        except OSError as e:  # no network, HTTP error, refused connection...
            reason = f"download from {source.url} failed ({e})"
    else:
        reason = "no URL is known for it" if not source.url else "offline mode"
    searched = "\n  ".join(str(m) for m in mirrors)
    raise SourceError(
        f"Source archive {source.file!r} (sha256 {source.sha256}) not found, and {reason}.\n"
        f"Put the file in one of these folders (or a '{source.dataset}/' sub-folder), "
        f"or point ${MIRROR_ENV} at a folder holding it:\n  {searched}"
    )


def _safe_name(name: str, archive: Path) -> str:
    p = Path(name)
    if p.is_absolute() or ".." in p.parts:
        raise SourceError(f"{archive}: unsafe member path {name!r}")
    return p.as_posix()


def extract(archive: Path, dest: Path) -> list[str]:
    """Unpack regular files in name order; no links, no absolute or parent paths, fixed mtimes."""
    written: list[str] = []
    name = archive.name
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        with tarfile.open(archive) as tf:
            members = sorted((m for m in tf.getmembers() if m.isfile()), key=lambda m: m.name)
            for m in members:
                rel = _safe_name(m.name, archive)
                out = dest / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with tf.extractfile(m) as src, open(out, "wb") as f:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, f)
                written.append(rel)
    elif name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                if info.is_dir():
                    continue
                rel = _safe_name(info.filename, archive)
                out = dest / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as f:
                    shutil.copyfileobj(src, f)
                written.append(rel)
    else:
        raise SourceError(f"{archive}: not a known archive type ({', '.join(_ARCHIVE_SUFFIXES)})")
    for rel in written:
        os.utime(dest / rel, (0, 0))
    return written


def build_raw(
    sources: list[Source],
    dest: Path,
    mirrors: list[Path],
    offline: bool = False,
    force: bool = False,
) -> Path:
    """Materialise `sources` into `dest` (e.g. data/raw/crop_disease), atomically.

    `dest/SOURCES.json` records what was used; a matching record means there is nothing to do.
    """
    record = {"sources": [{"file": s.file, "sha256": s.sha256} for s in sources]}
    stamp = dest / "SOURCES.json"
    if not force and stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == record:
        log.info("%s is up to date", dest)
        return dest
    local = [obtain(s, mirrors, offline=offline) for s in sources]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for s, path in zip(sources, local, strict=True):
            if s.extract and path.name.endswith(_ARCHIVE_SUFFIXES):
                n = len(extract(path, tmp))
                log.info("extracted %d files from %s", n, path)
            else:
                shutil.copyfile(path, tmp / s.file)
                os.utime(tmp / s.file, (0, 0))
        write_json(tmp / "SOURCES.json", record)
        os.utime(tmp / "SOURCES.json", (0, 0))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest
