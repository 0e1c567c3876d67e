"""Tiles, the tile dataset, page scoring, heat maps, ink features and the tile CNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from usecases.doc_fraud.models import DOC_MEAN, DOC_STD, IN_CHANNELS, doc_tilecnn
from usecases.doc_fraud.tiles import (
    INK_FEATURE_NAMES,
    TileDataset,
    grid_shape,
    heatmap_overlay,
    ink_features,
    score_page,
    stamp_ring,
    tile_boxes,
    tile_targets,
)

T = 32


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> list[tuple[Path, Path | None]]:
    """Three small pages: two forged (a dark block and a light patch), one authentic."""
    root = tmp_path_factory.mktemp("pages")
    rng = np.random.default_rng(0)
    out = []
    for i, forged in enumerate((True, True, False)):
        page = np.full((160, 200, 3), 235, dtype=np.uint8)
        page += rng.integers(0, 12, page.shape, dtype=np.uint8)
        page[40 + 30 * i : 46 + 30 * i, 20:180] = 30  # a line of "text": ink for hard negatives
        img = root / f"p{i}.png"
        Image.fromarray(page).save(img)
        mask_path = None
        if forged:
            mask = np.zeros(page.shape[:2], dtype=np.uint8)
            mask[100:140, 60:130] = 255
            mask_path = root / f"p{i}_mask.png"
            Image.fromarray(mask).save(mask_path)
        out.append((img, mask_path))
    return out


def test_tile_boxes_cover_the_page_with_edge_aligned_last_tiles():
    for h, w, tile, stride in ((1240, 874, 96, 96), (100, 70, 32, 20), (64, 64, 64, 64)):
        boxes = tile_boxes(h, w, tile, stride)
        cover = np.zeros((h, w), dtype=int)
        for x0, y0, x1, y1 in boxes:
            assert (x1 - x0, y1 - y0) == (tile, tile)
            assert min(x0, y0) >= 0 and x1 <= w and y1 <= h
            cover[y0:y1, x0:x1] += 1
        assert cover.min() >= 1
        assert max(b[2] for b in boxes) == w and max(b[3] for b in boxes) == h
        assert len(boxes) == np.prod(grid_shape(h, w, tile, stride))
    # A stride that fits leaves no overlap.
    assert len(tile_boxes(64, 96, 32, 32)) == 2 * 3


@pytest.mark.parametrize(
    ("args", "name"),
    [((100, 100, 128, 64), "tile"), ((100, 100, 32, 40), "stride"), ((0, 100, 32, 32), "height")],
)
def test_tile_boxes_reject_bad_arguments(args, name):
    with pytest.raises(ValueError, match=name):
        tile_boxes(*args)


def test_tile_targets_follow_the_mask():
    boxes = tile_boxes(64, 64, 32, 32)  # four tiles, row-major
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[0:32, 32:64] = 255  # all of the top-right tile
    mask[40:42, 0:2] = 255  # 4 pixels of the bottom-left tile: under 2 % of min(1024, 1028)
    assert tile_targets(mask, boxes, 0.02).tolist() == [0, 1, 0, 0]
    assert tile_targets(None, boxes).tolist() == [0, 0, 0, 0]
    # A tiny edit: the tile holding it is forged although it covers < 1 % of the tile.
    tiny = np.zeros((64, 64), dtype=np.uint8)
    tiny[50:53, 50:53] = 255
    assert tile_targets(tiny, boxes, 0.5).tolist() == [0, 0, 0, 1]
    with pytest.raises(ValueError, match="min_fraction"):
        tile_targets(mask, boxes, 0.0)
    with pytest.raises(ValueError, match="mask"):
        tile_targets(mask[None], boxes)


def test_dataset_is_balanced_as_documented_and_deterministic(pages):
    kw = dict(tile=T, stride=T, mean=DOC_MEAN, std=DOC_STD, seed=3, negatives_per_page=4)
    a = TileDataset(pages, train=True, **kw)
    b = TileDataset(pages, train=True, **kw)
    assert a.items == b.items and a.targets == b.targets
    # Forged tiles of one page (160 x 200, 32-px tiles), each twice, + 4 clean tiles per page.
    forged_per_page = int(tile_targets(_mask(pages[0][1]), tile_boxes(160, 200, T, T), 0.02).sum())
    assert forged_per_page > 0
    assert sum(a.targets) == 2 * forged_per_page * 2
    assert len(a) - sum(a.targets) == 3 * 4
    torch.manual_seed(0)
    xa = [a[i] for i in range(len(a))]
    torch.manual_seed(0)
    xb = [b[i] for i in range(len(b))]
    for (x1, y1), (x2, y2) in zip(xa, xb, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x, y = xa[0]
    assert x.shape == (IN_CHANNELS, T, T) and x.dtype == torch.float32 and y.dtype == torch.long
    coords = x[3:]  # tile centre (y, x) in [-1, 1], constant over the tile
    assert coords.amin() >= -1 and coords.amax() <= 1
    assert torch.equal(coords, coords[:, :1, :1].expand_as(coords))
    other = TileDataset(pages, train=True, **{**kw, "seed": 4})
    assert other.items != a.items or other.targets != a.targets


def test_eval_dataset_holds_every_tile_unshifted(pages):
    ds = TileDataset(pages, T, T, DOC_MEAN, DOC_STD, train=False, seed=0, negatives_per_page=0)
    assert len(ds) == 3 * len(tile_boxes(160, 200, T, T))
    x0, _ = ds[0]
    assert torch.equal(x0, ds[0][0])
    with pytest.raises(ValueError, match="max_shift"):
        TileDataset(pages, T, T, DOC_MEAN, DOC_STD, train=True, seed=0, max_shift=3)
    with pytest.raises(ValueError, match="negatives_per_page"):
        TileDataset(pages, T, T, DOC_MEAN, DOC_STD, train=True, seed=0, negatives_per_page=-1)


def test_model_forward_backward():
    torch.manual_seed(0)
    model = doc_tilecnn(image_size=T)
    x = torch.randn(4, IN_CHANNELS, T, T, requires_grad=True)
    out = model(x)
    assert out.shape == (4, 2) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with pytest.raises(ValueError, match="x"):
        model(torch.randn(2, 3, T, T))
    with pytest.raises(ValueError, match="image_size"):
        doc_tilecnn(image_size=50)
    with pytest.raises(ValueError, match="pretrained"):
        doc_tilecnn(pretrained=True)


def test_score_page_gives_a_heat_map_in_unit_range(pages):
    model = doc_tilecnn(image_size=T).train()
    image = Image.open(pages[0][0])
    score, heat = score_page(model, image, T, 24, DOC_MEAN, DOC_STD, batch_size=5)
    assert heat.shape == grid_shape(160, 200, T, 24)
    assert ((heat >= 0) & (heat <= 1)).all() and score == pytest.approx(float(heat.max()))
    assert model.training  # its mode is restored
    score2, heat2 = score_page(model, np.asarray(image), T, 24, DOC_MEAN, DOC_STD)
    np.testing.assert_allclose(heat, heat2, atol=1e-5)
    with pytest.raises(ValueError, match="image"):
        score_page(model, np.zeros((160, 200), dtype=np.uint8), T, T, DOC_MEAN, DOC_STD)
    with pytest.raises(ValueError, match="std"):
        score_page(model, image, T, T, DOC_MEAN, (0.5, 0.0, 0.5))


def test_heatmap_overlay_keeps_the_image_size(pages):
    image = Image.open(pages[0][0]).convert("RGB")
    boxes = tile_boxes(160, 200, T, 24)
    heat = np.zeros(grid_shape(160, 200, T, 24), dtype=np.float32)
    heat[1, 2] = 1.0
    out = heatmap_overlay(image, heat, boxes)
    assert out.size == image.size and out.mode == "RGB"
    x0, y0, x1, y1 = boxes[1 * heat.shape[1] + 2]
    px = np.asarray(out)[(y0 + y1) // 2, (x0 + x1) // 2]
    assert px[0] > px[1] + 50  # red where the tile is hot
    assert heatmap_overlay(image, heat).size == image.size
    with pytest.raises(ValueError, match="boxes"):
        heatmap_overlay(image, heat, boxes[:-1])
    with pytest.raises(ValueError, match="heat"):
        heatmap_overlay(image, heat.ravel())


def test_ink_features_see_the_stamp():
    from usecases.doc_fraud.synth.corpus import DocSpec, render_document
    from usecases.doc_fraud.synth.scan import decode_jpeg

    spec = DocSpec(3, "benin", "stamp")
    doc = render_document(spec, seed=1, forgery=False)
    page = decode_jpeg(doc.jpeg)
    feats = ink_features(page)
    assert tuple(feats) == INK_FEATURE_NAMES
    assert all(np.isfinite(v) for v in feats.values())
    assert feats["light_fraction"] > 0
    # The same page with the stamp painted over with paper: far less light coloured ink.
    x0, y0, x1, y1 = doc.record["regions"]["stamp"]
    blank = page.copy()
    blank[y0:y1, x0:x1] = np.median(page.reshape(-1, 3), axis=0).astype(np.uint8)
    assert ink_features(blank)["light_fraction"] < 0.5 * feats["light_fraction"]
    # The stamp itself is found where it was drawn, and is gone from the blanked page.
    h, w = page.shape[:2]
    assert x0 / w < feats["stamp_cx"] < x1 / w and y0 / h < feats["stamp_cy"] < y1 / h
    assert feats["stamp_area"] > 0 and 0 < feats["stamp_tone"] < 1 and feats["stamp_edge"] > 0
    assert ink_features(blank)["stamp_area"] < 0.2 * feats["stamp_area"]
    # Its ring too: centred in the stamp's box, with about the drawn radius (78-92 px).
    assert x0 / w < feats["ring_cx"] < x1 / w and y0 / h < feats["ring_cy"] < y1 / h
    assert 70 / w < feats["ring_radius"] < 100 / w and 0 < feats["ring_width"] < 4
    assert ink_features(blank)["ring_score"] < 0.3 * feats["ring_score"]
    assert stamp_ring(np.full((40, 30, 3), 230, np.uint8))["ring_score"] == 0
    # The same page with its stamp forgery (copied, missing or moved) reads differently.
    forged = ink_features(decode_jpeg(render_document(spec, seed=1).jpeg))
    assert any(abs(forged[n] - feats[n]) > 1e-3 for n in INK_FEATURE_NAMES)
    with pytest.raises(ValueError, match="image"):
        ink_features(page.astype(np.float32))


def _mask(path: Path | None) -> np.ndarray | None:
    return None if path is None else np.asarray(Image.open(path))
