import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from usecases.core.io import sha256_file
from usecases.core.sources import Source, SourceError, build_raw, extract, mirror_dirs, obtain


def make_tar(path: Path, members: dict[str, bytes]) -> str:
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1234567
            tf.addfile(info, io.BytesIO(data))
    return sha256_file(path)


@pytest.fixture
def mirror(tmp_path):
    m = tmp_path / "mirror" / "toy"
    m.mkdir(parents=True)
    sha = make_tar(m / "toy.tar", {"toy/b.txt": b"bee", "toy/a.txt": b"ay"})
    return tmp_path / "mirror", Source(file="toy.tar", sha256=sha, dataset="toy")


def test_obtain_from_mirror_subfolder(mirror):
    root, src = mirror
    assert obtain(src, [root]) == root / "toy" / "toy.tar"


def test_checksum_mismatch_is_refused(mirror):
    root, src = mirror
    bad = Source(file="toy.tar", sha256="0" * 64, dataset="toy")
    with pytest.raises(SourceError, match="SHA-256 mismatch"):
        obtain(bad, [root])


def test_missing_archive_names_file_sha_and_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = Source(file="absent.tar", sha256="a" * 64, dataset="x")
    with pytest.raises(SourceError) as e:
        obtain(src, [tmp_path / "m1"])
    msg = str(e.value)
    assert "absent.tar" in msg and "a" * 64 in msg and str(tmp_path / "m1") in msg
    assert "ZOO_MIRROR" in msg


def test_download_from_url_verifies_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    remote = tmp_path / "remote.tar"
    sha = make_tar(remote, {"x/y.txt": b"hello"})
    src = Source(file="remote.tar", sha256=sha, dataset="d", url=remote.as_uri())
    got = obtain(src, [tmp_path / "empty"])
    assert got == tmp_path / "cache" / "usecase-zoo" / "mirror" / "d" / "remote.tar"
    assert sha256_file(got) == sha
    # A URL serving other bytes is refused and nothing is left behind.
    wrong = Source(file="other.tar", sha256="b" * 64, dataset="d", url=remote.as_uri())
    with pytest.raises(SourceError, match="mismatch"):
        obtain(wrong, [tmp_path / "empty"])
    assert not (tmp_path / "cache" / "usecase-zoo" / "mirror" / "d" / "other.tar").exists()


def test_offline_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = Source(file="r.tar", sha256="c" * 64, url="http://127.0.0.1:9/r.tar")
    with pytest.raises(SourceError, match="offline mode"):
        obtain(src, [], offline=True)


def test_env_mirror_comes_first(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_MIRROR", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    dirs = mirror_dirs(tmp_path / "cfg")
    assert dirs[:3] == [tmp_path / "a", tmp_path / "b", tmp_path / "cfg"]


def test_build_raw_is_deterministic_and_idempotent(mirror, tmp_path):
    root, src = mirror

    def tree_hash(d: Path) -> str:
        h = hashlib.sha256()
        for p in sorted(d.rglob("*")):
            if p.is_file():
                h.update(p.relative_to(d).as_posix().encode() + p.read_bytes())
                h.update(str(p.stat().st_mtime).encode())
        return h.hexdigest()

    a = build_raw([src], tmp_path / "a" / "toy", [root])
    b = build_raw([src], tmp_path / "b" / "toy", [root])
    assert (a / "toy" / "a.txt").read_bytes() == b"ay"
    assert tree_hash(a) == tree_hash(b)
    before = (a / "SOURCES.json").stat().st_mtime_ns
    build_raw([src], a, [root])  # up to date: nothing rewritten
    assert (a / "SOURCES.json").stat().st_mtime_ns == before


def test_unsafe_member_paths_are_refused(tmp_path):
    arc = tmp_path / "evil.tar"
    make_tar(arc, {"../escape.txt": b"x"})
    with pytest.raises(SourceError, match="unsafe member path"):
        extract(arc, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_bad_source_config_is_named():
    with pytest.raises(ValueError, match="sha256 must be 64"):
        Source(file="x.tar", sha256="abc")
    with pytest.raises(ValueError, match="bare name"):
        Source(file="dir/x.tar", sha256="a" * 64)
