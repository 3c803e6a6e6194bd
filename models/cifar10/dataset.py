"""Data for the cifar10 model: CIFAR-10's own python-batch format, and the offline stand-in.

Both loaders return images in CIFAR-10's layout, uint8 ``[N, 32, 32, 3]`` (HWC, RGB), with
integer labels and the label names. The model's preprocessing is the same for both: ``x / 255``
as float32, NHWC.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

CIFAR10_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST_BATCH = "test_batch"
HELDOUT_FRACTION = 0.2
SPLIT_SEED = 0


def read_cifar10_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch (a pickled dict with b"data" and b"labels").

    Rows of b"data" are 3072 bytes: the 1024 red, then green, then blue values of a 32x32 image.
    """
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: expected data of shape [N, 3072], got {list(data.shape)}")
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if labels.shape[0] != data.shape[0]:
        raise ValueError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load_cifar10(root: str | Path):
    """Load the extracted ``cifar-10-batches-py`` folder: (train, test, label names)."""
    root = Path(root)
    with open(root / "batches.meta", "rb") as f:
        meta = pickle.load(f, encoding="bytes")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"label_names"]]
    parts = [read_cifar10_batch(root / b) for b in CIFAR10_TRAIN_BATCHES if (root / b).exists()]
    if not parts:
        raise FileNotFoundError(f"{root}: no data_batch_* files")
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    test = read_cifar10_batch(root / CIFAR10_TEST_BATCH)
    return train, test, names


def digits_as_cifar(images_8x8: np.ndarray) -> np.ndarray:
    """scikit-learn digits (8x8, values 0..16) to CIFAR-10's format: uint8 32x32 RGB.

    Each value is scaled to 0..255 and each pixel becomes a 4x4 block (nearest-neighbour),
    copied to the three channels.
    """
    grey = np.rint(np.asarray(images_8x8, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
    big = grey.repeat(4, axis=1).repeat(4, axis=2)
    return np.ascontiguousarray(np.repeat(big[..., None], 3, axis=3))


def load_digits_split():
    """The shipped weights' data: scikit-learn's digits as CIFAR-format images, split
    deterministically into (train, held-out) with labels "0".."9"."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits_as_cifar(digits.images)
    labels = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=HELDOUT_FRACTION, random_state=SPLIT_SEED, stratify=labels
    )
    return (x_tr, y_tr), (x_te, y_te), [str(i) for i in range(10)]


def to_model_input(images_uint8: np.ndarray) -> np.ndarray:
    """The model's preprocessing: uint8 NHWC to float32 in [0, 1]."""
    return np.asarray(images_uint8, dtype=np.float32) / np.float32(255.0)
