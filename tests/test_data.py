"""Integrity checks and prepare: bad files are quarantined with a reason, never skipped."""

import io
from pathlib import Path

import pytest
from PIL import Image

from usecases.core.data import (
    DataError,
    Item,
    carve,
    read_manifest,
    read_quarantine,
    scan,
    write_manifest,
)
from usecases.core.images import ImageError, check_image, load_rgb

from .conftest import leaf_image


def jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def bad_files(tmp_path) -> dict[str, Path]:
    d = tmp_path / "bad"
    d.mkdir()
    good = jpeg_bytes(leaf_image("healthy", 1))
    files = {
        "truncated": (d / "truncated.jpg", good[: len(good) // 2]),
        "empty": (d / "empty.jpg", b""),
        "text": (d / "text.jpg", b"this is not an image\n"),
    }
    for path, data in files.values():
        path.write_bytes(data)
    # A decompression bomb: tiny file, huge declared size.
    Image.new("L", (12000, 12000)).save(d / "bomb.png", optimize=True)
    Image.new("RGB", (8, 8)).save(d / "tiny.png")
    Image.new("I", (64, 64)).save(d / "int32.tif")
    out = {k: p for k, (p, _) in files.items()}
    out.update(bomb=d / "bomb.png", tiny=d / "tiny.png", int32=d / "int32.tif")
    return out


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("truncated", "corrupt image"),
        ("empty", "empty file"),
        ("text", "not an image"),
        ("bomb", "decompression bomb"),
        ("tiny", "too small"),
        ("int32", "unsupported colour mode"),
    ],
)
def test_check_image_names_the_problem(bad_files, kind, reason):
    assert reason in check_image(bad_files[kind], min_side=32, max_pixels=50_000_000)


def test_load_rgb_error_names_the_file(bad_files):
    with pytest.raises(ImageError, match="text.jpg: not an image"):
        load_rgb(bad_files["text"])


def test_cmyk_and_alpha_images_are_accepted_as_rgb(tmp_path):
    cmyk = tmp_path / "cmyk.jpg"
    leaf_image("healthy", 3).convert("CMYK").save(cmyk)
    rgba = tmp_path / "rgba.png"
    im = leaf_image("healthy", 4).convert("RGBA")
    im.putalpha(0)  # fully transparent: must become white, not the hidden colour
    im.save(rgba)
    assert check_image(cmyk) is None and check_image(rgba) is None
    assert load_rgb(cmyk).mode == "RGB"
    white = load_rgb(rgba)
    assert white.mode == "RGB" and white.getpixel((5, 5)) == (255, 255, 255)


def test_prepare_quarantines_bad_files_and_keeps_published_test(smoke_cfg, tiny_project):
    from usecases.core import stages

    train_dir = tiny_project / "data/raw/crop_disease/ibean/train/healthy"
    (train_dir / "zero.jpg").write_bytes(b"")
    (train_dir / "note.jpg").write_text("not a jpeg")
    cfg = smoke_cfg("data.limit_per_class=null")
    summary = stages.prepare(cfg)
    processed = Path(cfg.paths.processed) / "crop_disease"
    rejected = {Path(r.path).name: r.reason for r in read_quarantine(processed / "quarantine.csv")}
    assert rejected == {
        "zero.jpg": "empty file (0 bytes)",
        "note.jpg": "not an image (cannot identify the file format)",
    }
    assert summary["quarantined"] == 2 and summary["scanned"] == 3 * 11 + 2
    items = read_manifest(processed / "manifest.csv")
    assert {i.split for i in items} == {"train", "val", "test"}
    test = [i for i in items if i.split == "test"]
    assert len(test) == 9 and all("/test/" in i.path for i in test)  # published test untouched
    val = [i for i in items if i.split == "val"]
    assert sorted(i.label for i in val) == sorted(["angular_leaf_spot", "bean_rust", "healthy"])
    assert all(len(i.sha256) == 64 for i in items)


def test_carve_is_stratified_and_seeded():
    items = [Item(f"{lab}/{i}.jpg", lab, "train") for lab in "abc" for i in range(20)]
    a = carve(items, 0.25, "val", seed=1)
    b = carve(items, 0.25, "val", seed=1)
    c = carve(items, 0.25, "val", seed=2)
    assert a == b and a != c
    for lab in "abc":
        assert sum(i.split == "val" and i.label == lab for i in a) == 5


def test_manifest_roundtrip_and_bad_split(tmp_path):
    items = [Item("a.jpg", "x", "train", "0" * 64), Item("b.jpg", "y", "test", "1" * 64)]
    write_manifest(tmp_path / "m.csv", items)
    assert read_manifest(tmp_path / "m.csv") == items
    (tmp_path / "bad.csv").write_text("path,label,split,sha256\na.jpg,x,holdout,00\n")
    with pytest.raises(DataError, match="bad.csv:2: split 'holdout'"):
        read_manifest(tmp_path / "bad.csv")


def test_scan_refuses_paths_outside_the_layout(tmp_path):
    (tmp_path / "ibean/train/x").mkdir(parents=True)
    leaf_image("healthy", 1).save(tmp_path / "ibean/train/x/a.jpg")
    leaf_image("healthy", 2).save(tmp_path / "ibean/stray.jpg")
    with pytest.raises(DataError, match="stray.jpg: path does not match data.layout"):
        scan(tmp_path, "ibean/{split}/{label}/{file}", (".jpg",))
