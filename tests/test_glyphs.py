"""The Omniglot-like glyph set: .hex parsing, deterministic generation, caching, class split."""

from pathlib import Path
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from learned_opt import fewshot
from learned_opt.tasks import glyphs
from learned_opt.tasks.glyphs import Glyphs

START = 0x4E00


@pytest.fixture
def font(tmp_path):
    """A synthetic 16x16 .hex font of 60 random glyphs (plus an 8-wide one that is skipped)."""
    rng = np.random.default_rng(7)
    bits = rng.random((60, 16, 16)) < 0.3
    lines = [
        f"{START + i:04X}:{np.packbits(b, axis=1).tobytes().hex().upper()}"
        for i, b in enumerate(bits)
    ]
    lines.append(f"{START + 60:04X}:" + "0F" * 16)
    path = tmp_path / "font.hex"
    path.write_text("\n".join(lines) + "\n")
    return str(path), bits


def make(font_path, tmp_path, **kw):
    settings = dict(
        num_classes=40,
        instances=6,
        image_size=12,
        fonts=(font_path,),
        code_range=(START, START + 100),
        cache_dir=str(tmp_path / "cache"),
    )
    settings.update(kw)
    return settings


def test_parse_hex_reads_both_widths(font):
    path, bits = font
    table = glyphs.parse_hex(Path(path).read_text())
    assert len(table) == 61
    np.testing.assert_array_equal(table[START + 3], bits[3].astype(np.uint8))
    assert table[START + 60].shape == (16, 8) and table[START + 60][:, 4:].all()
    with pytest.raises(ValueError, match="line 1"):
        glyphs.parse_hex("4E00:ABC\n")


def test_render_identity_reproduces_the_glyph():
    glyph = np.zeros((1, 16, 16), np.uint8)
    glyph[0, 4:12, 6] = 1  # a vertical bar
    identity = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    image = glyphs.render(glyph, identity, image_size=20, margin=2.0)[0]
    # With margin 2 and 20 output pixels, output pixel (r, c) samples glyph pixel (r - 2, c - 2).
    np.testing.assert_array_equal(image[2:18, 2:18] > 127, glyph[0] == 1)
    assert image[:2].max() == 0 and image[:, :2].max() == 0


def test_same_seed_same_images_and_cache(font, tmp_path):
    path, _ = font
    settings = make(path, tmp_path)
    images, codes = glyphs.generate(**settings)
    assert images.shape == (40, 6, 12, 12) and images.dtype == np.uint8
    assert len(set(codes.tolist())) == 40 and images.max() > 200
    cached = list((tmp_path / "cache").glob("glyphs-*.npz"))
    assert len(cached) == 1
    glyphs.generate.cache_clear()
    again, _ = glyphs.generate(**make(path, tmp_path, cache_dir=str(tmp_path / "other")))
    np.testing.assert_array_equal(images, again)  # regenerated from scratch: identical
    other, _ = glyphs.generate(**make(path, tmp_path, seed=1))
    assert not np.array_equal(images, other)
    # Instances of a class differ (jitter), classes differ from each other.
    assert not np.array_equal(images[0, 0], images[0, 2])
    assert not np.array_equal(images[0, 0], images[1, 0])


def test_class_split_is_disjoint_and_complete():
    split = glyphs.class_split(1623, 1200, seed=3)
    assert len(split["train"]) == 1200 and len(split["test"]) == 423
    assert not set(split["train"]) & set(split["test"])
    assert sorted([*split["train"], *split["test"]]) == list(range(1623))
    np.testing.assert_array_equal(split["test"], glyphs.class_split(1623, 1200, seed=3)["test"])
    with pytest.raises(ValueError, match="num_train_classes"):
        glyphs.class_split(10, 10)


def test_family_tasks_use_only_their_split(font, tmp_path):
    path, _ = font
    settings = make(path, tmp_path, num_train_classes=30, image_size=16, channels=4)
    train = Glyphs(ways=5, split="train", **settings)
    test = Glyphs(ways=5, split="test", **settings)
    assert not set(train.classes()) & set(test.classes())
    keys = jax.random.split(jax.random.key(0), 50)
    drawn = np.asarray(jax.vmap(test.sample)(keys)["classes"])
    assert set(drawn.ravel()) <= set(test.classes().tolist())
    assert all(len(set(row)) == 5 for row in drawn)
    episodes = fewshot.sample_episodes(test, jax.random.key(1), 3, 2, 4)
    (xs, ys), (xq, yq) = episodes
    assert xs.shape == (3, 10, 256) and xq.shape == (3, 20, 256) and yq.shape == (3, 20)
    assert ys[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert float(xs.max()) <= 1.0 and float(xs.min()) >= 0.0
    # Support and query images of a task are different instances.
    for t in range(3):
        for s in np.asarray(xs[t]):
            assert not (np.abs(np.asarray(xq[t]) - s[None, :]).max(axis=1) == 0).any()
    params = test.init(None, jax.random.key(0))
    assert test.apply(params, xs[0]).shape == (10, 5)
    assert np.isfinite(float(test.loss(None, params, (xs[0], ys[0]))))


def test_conv_learner_is_four_normalised_blocks_and_a_linear_head():
    family = Glyphs(
        ways=3,
        image_size=20,
        channels=6,
        num_classes=10,
        num_train_classes=5,
        fonts=(),
        cache_dir="unused",
    )
    params = family.init(None, jax.random.key(0))
    assert [sorted(block) for block in params[:4]] == [["offset", "scale", "w"]] * 4
    assert [block["w"].shape for block in params] == [(3, 3, 1, 6)] + [(3, 3, 6, 6)] * 3 + [(6, 3)]
    x = jax.random.uniform(jax.random.key(1), (7, 400))
    assert family.apply(params, x).shape == (7, 3)
    # 20 -> 10 -> 5 -> 2 -> 1 pixels; 32 pixels keep a 2x2 map for the head.
    assert [glyphs.pooled_size(n) for n in (16, 20, 28, 32)] == [1, 1, 1, 2]
    # Batch normalisation uses the batch's own statistics: zero mean, unit variance per channel.
    h = 3.0 + 2.0 * jax.random.normal(jax.random.key(2), (4, 5, 5, 2))
    normed = glyphs.batch_norm(h, jnp.ones(2), jnp.zeros(2))
    np.testing.assert_allclose(normed.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(normed.var(axis=(0, 1, 2)), 1.0, rtol=1e-3)
    # Max-pooling keeps the largest of every 2x2 block and drops an odd last row and column.
    grid = jnp.arange(25.0).reshape(1, 5, 5, 1)
    assert glyphs.max_pool2(grid)[0, :, :, 0].tolist() == [[6.0, 8.0], [16.0, 18.0]]
    mlp = Glyphs(
        ways=3,
        image_size=12,
        model="mlp",
        hidden_sizes=(8,),
        num_classes=10,
        num_train_classes=5,
        fonts=(),
        cache_dir="unused",
    )
    assert [layer["w"].shape for layer in mlp.init(None, jax.random.key(0))] == [(144, 8), (8, 3)]


def test_errors(font, tmp_path):
    path, _ = font
    settings = make(path, tmp_path, num_train_classes=30, image_size=16)
    family = Glyphs(ways=5, split="test", **settings)
    with pytest.raises(ValueError, match="exceeds the 6"):
        fewshot.sample_episodes(family, jax.random.key(0), 2, 3, 4)
    with pytest.raises(ValueError, match="only 10 classes"):
        Glyphs(ways=20, split="test", **settings)
    with pytest.raises(ValueError, match="split"):
        Glyphs(split="val", **settings)
    with pytest.raises(ValueError, match="image_size: the conv model needs at least 16"):
        Glyphs(**{**settings, "image_size": 12})
    with pytest.raises(ValueError, match=r"model: expected one of \('conv', 'mlp'\), got 'resnet'"):
        Glyphs(model=cast(Any, "resnet"), **settings)
    with pytest.raises(ValueError, match="channels"):
        Glyphs(channels=0, **settings)
    with pytest.raises(ValueError, match="distinct characters"):
        glyphs.generate(**make(path, tmp_path, num_classes=100))
    with pytest.raises(FileNotFoundError, match="apt-get install unifont"):
        glyphs.read_font(str(tmp_path / "missing.hex"))


@pytest.mark.skipif(not Path(glyphs.UNIFONT_PATHS[0]).exists(), reason="unifont not installed")
def test_unifont_glyphs(tmp_path):
    images, codes = glyphs.generate(num_classes=50, instances=4, cache_dir=str(tmp_path))
    assert images.shape == (50, 4, 28, 28)
    assert ((codes >= 0x4E00) & (codes <= 0x9FFF)).all()
    ink = (images > 127).mean(axis=(2, 3))
    assert (ink > 0.02).all() and (ink < 0.6).all()
