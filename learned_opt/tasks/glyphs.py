"""An Omniglot-like few-shot image set generated offline from GNU Unifont glyphs.

Omniglot (1623 handwritten characters, 20 drawings each) cannot be downloaded here, so this
module builds a stand-in deterministically from the ``.hex`` bitmap fonts of the Debian package
``unifont`` (``apt-get install unifont``: ``/usr/share/unifont/unifont.hex`` and
``unifont_jp.hex``, 16x16 bitmaps, read without Pillow). A *class* is one character present in
every font; its *instances* alternate between the fonts, each drawn with its own small random
affine jitter (rotation, scale, shear, translation) and bilinear resampling to
``image_size x image_size``. Classes are split once into meta-training and meta-test classes.

Generated images are cached as ``.npz`` files (in ``$LEARNED_OPT_CACHE`` or
``~/.cache/learned_opt``), keyed by the generation settings and the fonts' contents, and in
memory.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np

from learned_opt._files import atomic_write_bytes
from learned_opt.tasks import _nn
from learned_opt.tasks.base import PyTree, TaskFamily, check, choice, integer, positive_ints

#: The fonts of Debian's ``unifont`` package.
UNIFONT_PATHS = ("/usr/share/unifont/unifont.hex", "/usr/share/unifont/unifont_jp.hex")
#: CJK Unified Ideographs: ~20k characters, each a 16x16 glyph in both fonts.
CJK_RANGE = (0x4E00, 0x9FFF)
GLYPH_SIZE = 16


def parse_hex(text: str) -> dict[int, np.ndarray]:
    """Parses Unifont ``.hex`` lines ``CODEPOINT:BITMAP`` into ``{codepoint: uint8[16, width]}``.

    A 32-digit bitmap is an 8x16 glyph, a 64-digit one 16x16; rows are most significant bit
    first.

    Example:
        >>> from learned_opt.tasks.glyphs import parse_hex
        >>> glyph = parse_hex("0041:" + "00" * 4 + "FF" + "00" * 11)[0x41]
        >>> glyph.shape, int(glyph.sum()), glyph[4].tolist()[:3]
        ((16, 8), 8, [1, 1, 1])
    """
    glyphs = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        code, sep, bitmap = line.partition(":")
        if not sep or len(bitmap) not in (32, 64):
            raise ValueError(f"parse_hex: line {number} is not CODEPOINT:BITMAP: {line[:40]!r}")
        width = len(bitmap) // 4  # 16 rows of width/4 hex digits
        rows = np.frombuffer(bytes.fromhex(bitmap), np.uint8).reshape(GLYPH_SIZE, width // 8)
        glyphs[int(code, 16)] = np.unpackbits(rows, axis=1)
    return glyphs


@functools.lru_cache(maxsize=4)
def read_font(path: str) -> dict[int, np.ndarray]:
    """Reads a ``.hex`` font (cached); says how to install Unifont if it is missing."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"glyphs: font file {path} not found; install it with "
            "`apt-get install unifont` (Debian/Ubuntu) or pass font paths explicitly."
        ) from None
    return parse_hex(text)


def _affine_jitter(rng: np.random.Generator, num: int, strength: float) -> np.ndarray:
    """``num`` random 2x3 affine maps (output -> glyph coordinates), centred at the origin."""
    angle = np.deg2rad(rng.uniform(-12.0, 12.0, num)) * strength
    scale = np.exp(rng.uniform(-0.12, 0.12, (num, 2)) * strength)
    shear = rng.uniform(-0.15, 0.15, num) * strength
    shift = rng.uniform(-1.5, 1.5, (num, 2)) * strength
    cos, sin = np.cos(angle), np.sin(angle)
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    shear_m = np.stack(
        [np.stack([np.ones(num), shear], -1), np.stack([np.zeros(num), np.ones(num)], -1)], -2
    )
    forward = rot @ shear_m * scale[:, :, None]
    inverse = np.linalg.inv(forward)
    return np.concatenate([inverse, (-inverse @ shift[:, :, None])], axis=-1)


def render(
    glyphs: np.ndarray, maps: np.ndarray, image_size: int, margin: float = 2.0
) -> np.ndarray:
    """Resamples ``glyphs (n, 16, 16)`` through affine ``maps (n, 2, 3)`` bilinearly.

    Output pixel centres, centred at the origin and scaled so that the undistorted glyph fills
    the image up to ``margin`` glyph pixels on each side, go through ``maps`` to glyph
    coordinates; pixels outside the glyph read 0. Returns ``uint8 (n, image_size, image_size)``.
    """
    n = glyphs.shape[0]
    scale = (GLYPH_SIZE + 2 * margin) / image_size
    centres = (np.arange(image_size) + 0.5) * scale - (GLYPH_SIZE + 2 * margin) / 2
    gy, gx = np.meshgrid(centres, centres, indexing="ij")
    points = np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)]).astype(np.float32)  # x first
    # Glyph pixel (r, c) sits at flat index (r + 1) * side + c + 1 of a zero-padded glyph.
    side = GLYPH_SIZE + 2
    padded = np.pad(glyphs.astype(np.float32), ((0, 0), (1, 1), (1, 1))).reshape(n, -1)
    out = np.empty((n, image_size * image_size), np.uint8)
    for start in range(0, n, 1024):
        chunk = slice(start, min(start + 1024, n))
        src = maps[chunk].astype(np.float32) @ points + (GLYPH_SIZE / 2 - 0.5)
        # Clipping to the padding ring keeps far-away points reading zeros.
        x = np.clip(src[:, 0], -1.0, GLYPH_SIZE)
        y = np.clip(src[:, 1], -1.0, GLYPH_SIZE)
        x0 = np.minimum(np.floor(x), GLYPH_SIZE - 1).astype(np.int32)
        y0 = np.minimum(np.floor(y), GLYPH_SIZE - 1).astype(np.int32)
        fx, fy = x - x0, y - y0
        base = (y0 + 1) * side + x0 + 1
        rows = padded[chunk]
        at = lambda offset, rows=rows, base=base: np.take_along_axis(rows, base + offset, axis=1)
        value = (at(0) * (1 - fx) + at(1) * fx) * (1 - fy) + (
            at(side) * (1 - fx) + at(side + 1) * fx
        ) * fy
        out[chunk] = np.round(255 * value).astype(np.uint8)
    return out.reshape(n, image_size, image_size)


def _cache_dir(cache_dir: str | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("LEARNED_OPT_CACHE", Path.home() / ".cache" / "learned_opt"))


@functools.lru_cache(maxsize=4)
def generate(
    num_classes: int = 1623,
    instances: int = 20,
    image_size: int = 28,
    seed: int = 0,
    jitter: float = 1.0,
    fonts: Sequence[str] = UNIFONT_PATHS,
    code_range: tuple[int, int] = CJK_RANGE,
    cache_dir: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generates (or loads from the cache) the glyph image set.

    Args:
        num_classes: characters, drawn at random (by ``seed``) from the distinct glyphs of
            ``code_range`` present, 16 pixels wide, in every font.
        instances: images per class; instance ``i`` uses font ``i % len(fonts)``.
        image_size: side of the square images.
        seed: selects the classes and draws the jitter.
        jitter: strength of the random affine distortion (0 for none).
        fonts: paths of ``.hex`` fonts.
        code_range: inclusive range of Unicode code points to draw characters from.
        cache_dir: where ``.npz`` files are kept (default ``$LEARNED_OPT_CACHE`` or
            ``~/.cache/learned_opt``).

    Returns:
        ``(images, codepoints)``: ``uint8 (num_classes, instances, image_size, image_size)`` and
        ``int64 (num_classes,)``.
    """
    fonts = tuple(str(f) for f in fonts)
    digest = hashlib.sha256()
    settings = [num_classes, instances, image_size, seed, jitter, list(code_range)]
    digest.update(json.dumps(settings).encode())
    for font in fonts:
        digest.update(Path(font).read_bytes() if Path(font).exists() else font.encode())
    path = _cache_dir(cache_dir) / f"glyphs-{digest.hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as cached:
            return cached["images"], cached["codepoints"]

    tables = [read_font(font) for font in fonts]
    low, high = code_range
    candidates, seen = [], set()
    for code in range(low, high + 1):
        glyphs = [t[code] for t in tables if code in t]
        if len(glyphs) < len(tables) or any(g.shape[1] != GLYPH_SIZE for g in glyphs):
            continue
        key = glyphs[0].tobytes()
        if key not in seen and glyphs[0].any():
            seen.add(key)
            candidates.append(code)
    if num_classes > len(candidates):
        raise ValueError(
            f"num_classes: only {len(candidates)} distinct characters are available, asked for "
            f"{num_classes}"
        )
    rng = np.random.default_rng(seed)
    codepoints = np.sort(rng.choice(np.asarray(candidates), num_classes, replace=False))
    font_of = np.arange(instances) % len(tables)
    bitmaps = np.stack(
        [np.stack([tables[f][int(c)] for f in font_of]) for c in codepoints]
    ).reshape(-1, GLYPH_SIZE, GLYPH_SIZE)
    maps = _affine_jitter(rng, bitmaps.shape[0], jitter)
    images = render(bitmaps, maps, image_size).reshape(
        num_classes, instances, image_size, image_size
    )
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images, codepoints=codepoints)
    atomic_write_bytes(path, buffer.getvalue())
    return images, codepoints


def class_split(num_classes: int, num_train_classes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Disjoint meta-train and meta-test class indices (a seeded permutation, each sorted).

    Example:
        >>> from learned_opt.tasks.glyphs import class_split
        >>> split = class_split(10, 7)
        >>> len(split["train"]), len(split["test"]), set(split["train"]) & set(split["test"])
        (7, 3, set())
    """
    if not 0 < num_train_classes < num_classes:
        raise ValueError(
            f"num_train_classes: expected 0 < {num_train_classes} < num_classes = {num_classes}"
        )
    order = np.random.default_rng([seed, 1]).permutation(num_classes)
    return {"train": np.sort(order[:num_train_classes]), "test": np.sort(order[num_train_classes:])}


#: Convolutional blocks of the few-shot learner of Finn et al. (2017), after Vinyals et al.
CONV_BLOCKS = 4


def conv3x3(x: jax.Array, w: jax.Array) -> jax.Array:
    """A 3x3 ``"SAME"`` convolution of ``x (n, h, w, c_in)`` with ``w (3, 3, c_in, c_out)``.

    Written as one matrix product of the nine shifted copies of ``x`` (im2col): inside a
    few-shot learner the weights differ per task and the inner loop is differentiated twice,
    and on CPU this runs several times faster than ``lax.conv_general_dilated`` there.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from learned_opt.tasks.glyphs import conv3x3
        >>> x = jax.random.normal(jax.random.key(0), (2, 5, 5, 3))
        >>> w = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
        >>> reference = jax.lax.conv_general_dilated(
        ...     x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        >>> bool(np.allclose(conv3x3(x, w), reference, atol=1e-5))
        True
    """
    _, height, width, channels = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    shifted = [padded[:, i : i + height, j : j + width] for i in range(3) for j in range(3)]
    return jnp.concatenate(shifted, axis=-1) @ w.reshape(9 * channels, -1)


def max_pool2(x: jax.Array) -> jax.Array:
    """2x2 max-pooling with stride 2 of ``x (n, h, w, c)``; an odd last row or column is dropped."""
    n, height, width, channels = x.shape
    x = x[:, : height // 2 * 2, : width // 2 * 2]
    return x.reshape(n, height // 2, 2, width // 2, 2, channels).max(axis=(2, 4))


def batch_norm(x: jax.Array, scale: jax.Array, offset: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Normalises every channel of ``x (n, h, w, c)`` by the statistics of the batch itself."""
    mean = jnp.mean(x, axis=(0, 1, 2), keepdims=True)
    var = jnp.var(x, axis=(0, 1, 2), keepdims=True)
    channel = lambda v: v.reshape(1, 1, 1, -1)
    return (x - mean) * jax.lax.rsqrt(var + eps) * channel(scale) + channel(offset)


def pooled_size(image_size: int, blocks: int = CONV_BLOCKS) -> int:
    """Side of the feature map after ``blocks`` 2x2 poolings of an ``image_size`` image."""
    for _ in range(blocks):
        image_size //= 2
    return image_size


def init_conv(key: jax.Array, image_size: int, channels: int, ways: int) -> list[dict]:
    """The conv learner's parameters: four ``{"w", "scale", "offset"}`` blocks, then the head."""
    feature_size = pooled_size(image_size) ** 2 * channels
    shapes = [(3, 3, 1, channels)] + [(3, 3, channels, channels)] * (CONV_BLOCKS - 1)
    layers = _nn.init_layers(key, [*shapes, (feature_size, ways)], None)
    blocks = [
        {"w": layer["w"], "scale": jnp.ones(channels), "offset": jnp.zeros(channels)}
        for layer in layers[:-1]
    ]
    return [*blocks, layers[-1]]


def apply_conv(params: list[dict], x: jax.Array, image_size: int) -> jax.Array:
    """Logits of the conv learner for flattened images ``x (n, image_size**2)``."""
    h = x.reshape(-1, image_size, image_size, 1)
    for block in params[:-1]:
        h = conv3x3(h, block["w"])
        h = max_pool2(jax.nn.relu(batch_norm(h, block["scale"], block["offset"])))
    return _nn.dense(params[-1], h.reshape(h.shape[0], -1))


@dataclasses.dataclass(frozen=True)
class Glyphs(TaskFamily):
    """N-way few-shot classification of Unifont glyphs (an offline stand-in for Omniglot).

    A task draws ``ways`` classes of its ``split`` (``task_params = {"classes": int32[ways]}``),
    labelled ``0..ways-1`` in the order drawn. ``support_query`` draws, per class, distinct
    instances for the support and query sets (so ``k_support + k_query <= instances``, exposed
    as ``max_examples``); ``batch`` is a support set of ``shots`` images per class. Images are
    flattened to ``image_size**2`` floats in ``[0, 1]`` and the loss is the softmax
    cross-entropy.

    The model (``model="conv"``) is the few-shot learner of Finn et al. (2017): four blocks of a
    3x3 convolution with ``channels`` filters, batch normalisation, ReLU and 2x2 max-pooling,
    then a linear layer to ``ways`` logits. Batch normalisation uses the statistics of the batch
    it is applied to (a support set while adapting, a query set when scoring), as in the MAML
    code; it keeps no running averages. ``model="mlp"`` is a ReLU MLP with ``hidden_sizes``.

    Args:
        ways: classes per task (N).
        shots: images per class in ``batch`` (K).
        split: ``"train"`` (meta-training classes) or ``"test"`` (meta-test classes).
        num_classes: characters in the whole set (1623, as Omniglot).
        num_train_classes: meta-training classes (1200, as the usual Omniglot split).
        instances: images per class (20, as Omniglot).
        image_size: image side (28, as the usual down-sampled Omniglot); at least 16 for the
            convolutional model, whose four poolings halve it four times.
        seed: generation and split seed.
        model: ``"conv"`` or ``"mlp"``.
        channels: filters of every convolution (64 in the MAML paper).
        hidden_sizes: widths of the MLP's hidden layers (``model="mlp"``).
        fonts: ``.hex`` font files (default: Debian's Unifont).
        code_range: Unicode code points to draw characters from (default: CJK ideographs).
        cache_dir: see :func:`generate`.

    References:
        Lake, Salakhutdinov & Tenenbaum 2015 (Omniglot); Vinyals et al. 2016, "Matching
        networks for one shot learning" (the four-block convolutional embedding); Finn et al.
        2017 (MAML), section 5.2.

    Example:
        With Debian's Unifont installed, ``Glyphs(ways=5)`` is the whole data set; here a
        made-up font of 40 random 16x16 characters in Unifont's ``.hex`` format stands in:

        >>> import jax, os, tempfile, numpy as np
        >>> from learned_opt.tasks.glyphs import Glyphs
        >>> folder, rng = tempfile.mkdtemp(), np.random.default_rng(0)
        >>> font = os.path.join(folder, "tiny.hex")
        >>> with open(font, "w") as f:
        ...     for k in range(40):
        ...         _ = f.write(f"{0x4E00 + k:04X}:{rng.bytes(32).hex()}\\n")
        >>> family = Glyphs(ways=5, num_classes=40, num_train_classes=30, image_size=16,
        ...                 channels=8, fonts=(font,), cache_dir=folder)
        >>> task_params = family.sample(jax.random.key(0))
        >>> (x, y), (xq, yq) = family.support_query(task_params, jax.random.key(1), 1, 3)
        >>> x.shape, y.tolist(), xq.shape
        ((5, 256), [0, 1, 2, 3, 4], (15, 256))
        >>> params = family.init(task_params, jax.random.key(2))
        >>> [block["w"].shape for block in params]
        [(3, 3, 1, 8), (3, 3, 8, 8), (3, 3, 8, 8), (3, 3, 8, 8), (8, 5)]
        >>> family.apply(params, xq).shape
        (15, 5)
    """

    name: ClassVar[str] = "glyphs"

    ways: int = 5
    shots: int = 1
    split: str = "train"
    num_classes: int = 1623
    num_train_classes: int = 1200
    instances: int = 20
    image_size: int = 28
    seed: int = 0
    model: Literal["conv", "mlp"] = "conv"
    channels: int = 64
    hidden_sizes: tuple[int, ...] = (128, 64)
    fonts: tuple[str, ...] = UNIFONT_PATHS
    code_range: tuple[int, int] = CJK_RANGE
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "hidden_sizes", positive_ints("hidden_sizes", self.hidden_sizes, allow_empty=True)
        )
        choice("split", self.split, ("train", "test"))
        choice("model", self.model, ("conv", "mlp"))
        integer("channels", self.channels, minimum=1)
        integer("ways", self.ways, minimum=2)
        integer("instances", self.instances, minimum=2)
        integer("shots", self.shots, minimum=1)
        check(self.shots < self.instances, f"shots: must be in [1, instances), got {self.shots}")
        for name in ("num_classes", "num_train_classes", "image_size"):
            integer(name, getattr(self, name), minimum=1)
        integer("seed", self.seed, minimum=0)
        check(
            self.model == "mlp" or pooled_size(self.image_size) >= 1,
            f"image_size: the conv model needs at least 16 pixels, got {self.image_size}",
        )
        available = len(self.classes())
        check(
            self.ways <= available,
            f"ways: the {self.split} split has only {available} classes, asked for {self.ways}",
        )

    @property
    def max_examples(self) -> int:
        """Instances per class: the most support plus query examples a class can give."""
        return self.instances

    def classes(self) -> np.ndarray:
        """Indices of this split's classes."""
        return class_split(self.num_classes, self.num_train_classes, self.seed)[self.split]

    def images(self) -> np.ndarray:
        """The whole generated set, ``uint8 (num_classes, instances, size, size)``."""
        return generate(
            self.num_classes,
            self.instances,
            self.image_size,
            self.seed,
            fonts=self.fonts,
            code_range=self.code_range,
            cache_dir=self.cache_dir,
        )[0]

    def sample(self, key: jax.Array) -> PyTree:
        classes = jnp.asarray(self.classes(), jnp.int32)
        return {"classes": jax.random.choice(key, classes, (self.ways,), replace=False)}

    def init(self, task_params: PyTree, key: jax.Array) -> PyTree:
        if self.model == "conv":
            return init_conv(key, self.image_size, self.channels, self.ways)
        return _nn.init_mlp(key, (self.image_size**2, *self.hidden_sizes, self.ways), None)

    def apply(self, params: PyTree, x: jax.Array) -> jax.Array:
        """Logits ``(n, ways)`` of flattened images ``x (n, image_size**2)``."""
        if self.model == "conv":
            return apply_conv(params, x, self.image_size)
        return _nn.mlp(params, x, jax.nn.relu)

    def support_query(
        self, task_params: PyTree, key: jax.Array, k_support: int, k_query: int
    ) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
        """Per class, ``k_support`` support and ``k_query`` other query images (class-major)."""
        if k_support + k_query > self.instances:
            raise ValueError(
                f"k_support + k_query = {k_support + k_query} exceeds the {self.instances} "
                "instances per class"
            )
        keys = jax.random.split(key, self.ways)
        picks = jax.vmap(lambda k: jax.random.permutation(k, self.instances))(keys)
        images = jnp.asarray(self.images())[task_params["classes"][:, None], picks]
        x = images.reshape(self.ways, self.instances, -1).astype(jnp.float32) / 255.0
        labels = jnp.broadcast_to(jnp.arange(self.ways)[:, None], (self.ways, self.instances))

        def take(lo, hi):
            return x[:, lo:hi].reshape(-1, x.shape[-1]), labels[:, lo:hi].reshape(-1)

        return take(0, k_support), take(k_support, k_support + k_query)

    def batch(self, task_params: PyTree, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.support_query(task_params, key, self.shots, 1)[0]

    def loss(self, task_params: PyTree, params: PyTree, batch: PyTree) -> jax.Array:
        x, y = batch
        return _nn.softmax_cross_entropy(self.apply(params, x), y)
