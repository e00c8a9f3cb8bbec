"""Variable-length rows: a ragged cache that stays memory-mapped, and batches padded to their longest item.

A ragged entry is two entries of the content-addressed cache (`ser_lightning.data.cache`), so it
is built under the same lock, written as atomically and verified against the same checksums:

- `<kind>-lengths-<key>`: int64, one length per row (samples, or frames);
- `<kind>-<key>`: every row concatenated along its first axis, `(sum(lengths), *trailing)`.

Row i is `data[offsets[i] : offsets[i] + lengths[i]]` (`RaggedArray`), a view of the map: no
row is copied until a batch is made. `RaggedUtterances` serves rows as `CachedUtterances` does,
with a seeded random crop of training clips longer than `max_length` (seeded per (epoch seed,
row), so a resumed run replays it) and batches padded with zeros to their longest item, with
each item's `lengths` and a boolean `mask` (True on real samples or frames).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from ser_lightning.data.cache import ArrayCache
from ser_lightning.utils.errors import InvalidSetting


class RaggedArray:
    """Rows of different lengths, stored flat along the first axis of one (memory-mapped) array.

    Args:
        data: All rows concatenated, `(sum(lengths), *trailing)`.
        lengths: Each row's length along the first axis.

    Raises:
        InvalidSetting: when the lengths do not add up to the data's first axis.
    """

    def __init__(self, data: np.ndarray, lengths: np.ndarray):
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.ndim != 1 or (lengths < 0).any() or int(lengths.sum()) != len(data):
            raise InvalidSetting(
                f"a ragged array's lengths (sum {int(lengths.sum())}) must be non-negative and add up to "
                f"its data's {len(data)} rows; rebuild the cache entry (delete its files)"
            )
        self.data = data
        self.lengths = lengths
        self.offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, row: int) -> np.ndarray:
        """Return row `row` as a view of the data, `(length, *trailing)`."""
        start = int(self.offsets[row])
        return self.data[start : start + int(self.lengths[row])]


def lengths_kind(kind: str) -> str:
    """Name the cache kind that holds a ragged entry's lengths.

    Returns:
        `<kind>-lengths`.
    """
    return f"{kind}-lengths"


def build_ragged(
    cache: ArrayCache,
    kind: str,
    key: str,
    lengths: np.ndarray,
    trailing: tuple[int, ...],
    fill_row: Callable[[int, np.ndarray], None],
    metadata: dict | None = None,
    dtype: str = "float32",
) -> bool:
    """Build a ragged entry unless an intact one exists (lengths first, then the data).

    Args:
        cache: The content-addressed cache.
        kind: The entry's kind (e.g. `waveforms-full`).
        key: The entry's key.
        lengths: Each row's length along the first axis.
        trailing: The shape of one step of a row (`()` for waveforms).
        fill_row: Called as `fill_row(i, out)` with the writable view of row i, to fill all of it.
        metadata: More to record in both entries' metadata.
        dtype: The data's dtype.

    Returns:
        Whether this call built the data entry.
    """
    lengths = np.asarray(lengths, dtype=np.int64)

    def fill_lengths(out: np.ndarray) -> None:
        out[:] = lengths

    cache.build(lengths_kind(kind), key, (len(lengths),), "int64", fill_lengths, metadata)

    def fill_data(out: np.ndarray) -> None:
        view = RaggedArray(out, lengths)
        for i in range(len(lengths)):
            fill_row(i, view[i])

    _, built = cache.build(kind, key, (int(lengths.sum()), *trailing), dtype, fill_data, metadata)
    return built


def load_ragged(cache: ArrayCache, kind: str, key: str) -> RaggedArray:
    """Open a built ragged entry, memory-mapped read-only.

    Returns:
        The rows, as views of the memory-mapped data.
    """
    lengths = np.array(cache.load(lengths_kind(kind), key))
    return RaggedArray(cache.load(kind, key), lengths)


def crop_start(length: int, max_length: int, epoch_seed: int | None, row: int) -> int:
    """Choose where a clip longer than `max_length` is cut.

    Args:
        length: The clip's length.
        max_length: The longest clip kept.
        epoch_seed: The epoch's seed for a random crop drawn from (epoch seed, row); None for
            the centre crop.
        row: The clip's table row.

    Returns:
        The first kept index (0 when the clip is not longer than `max_length`).
    """
    spare = length - max_length
    if spare <= 0:
        return 0
    if epoch_seed is None:
        return spare // 2
    return int(np.random.default_rng([int(epoch_seed), int(row)]).integers(0, spare + 1))


def pad_batch(items: list[np.ndarray], time_last: bool = False) -> dict[str, torch.Tensor]:
    """Pad items of different lengths with zeros to the longest one.

    Args:
        items: `(length_i, *trailing)` float arrays.
        time_last: Move the length axis to the end (features: `(B, *trailing, T)`).

    Returns:
        `{"data": (B, T, *trailing) or (B, *trailing, T), "lengths": (B,) int64, "mask": (B, T) bool}`.
    """
    lengths = np.array([len(item) for item in items], dtype=np.int64)
    longest = int(lengths.max()) if len(items) else 0
    trailing = items[0].shape[1:] if items else ()
    block = np.zeros((len(items), longest, *trailing), dtype=np.float32)
    for i, item in enumerate(items):
        block[i, : len(item)] = item
    if time_last:
        block = np.ascontiguousarray(np.moveaxis(block, 1, -1))
    lengths_t = torch.from_numpy(lengths)
    mask = torch.arange(longest).unsqueeze(0) < lengths_t.unsqueeze(1)
    return {"data": torch.from_numpy(block), "lengths": lengths_t, "mask": mask}


class RaggedUtterances(Dataset):
    """Rows of a ragged cache with their labels, batched padded to the longest item.

    Addressed like `CachedUtterances`: by position, or by `(position, epoch seed)` from a
    sampler with `item_seeds=True`. A row longer than `max_length` is cropped: at a place drawn
    from (epoch seed, row) when an epoch seed comes with it (training), in the centre otherwise.

    Args:
        array: The ragged rows.
        rows: The split's table rows.
        labels: Every table row's label.
        kind: The batch key of the data ("waveform" or "features").
        max_length: The longest row served (None: whole rows, as evaluation uses them).
        time_last: Whether batches put the length axis last (features `(B, C, F, T)`).

    Raises:
        InvalidSetting: when `max_length` is below 1.
    """

    def __init__(
        self,
        array: RaggedArray,
        rows: np.ndarray,
        labels: np.ndarray,
        kind: str,
        max_length: int | None = None,
        time_last: bool = False,
    ):
        if max_length is not None and max_length < 1:
            raise InvalidSetting(
                f"data.max_duration_s gives {max_length} samples or frames per clip; it must be positive "
                "(or null for whole clips)"
            )
        self.array = array
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = labels
        self.kind = kind
        self.max_length = max_length
        self.time_last = time_last

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self) -> np.ndarray:
        """Give each position's served length (after the crop), for a length-bucketed sampler.

        Returns:
            One length per position of the split.
        """
        lengths = self.array.lengths[self.rows]
        return lengths if self.max_length is None else np.minimum(lengths, self.max_length)

    def _item(self, position: int, epoch_seed: int | None) -> np.ndarray:
        row = int(self.rows[position])
        item = self.array[row]
        if self.max_length is not None and len(item) > self.max_length:
            start = crop_start(len(item), self.max_length, epoch_seed, row)
            item = item[start : start + self.max_length]
        return np.asarray(item, dtype=np.float32)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """Return one item as a batch of one (padded batches are made by `__getitems__`)."""
        return self.__getitems__([key])

    def __getitems__(self, keys: list) -> dict:
        """Fetch a batch, padded to its longest item.

        Args:
            keys: positions, or `(position, epoch seed)` pairs.

        Returns:
            `{kind: padded data, "lengths": (B,), "mask": (B, T), "label": (B,), "row": (B,)}`.
        """
        pairs = [k if isinstance(k, tuple) else (k, None) for k in keys]
        padded = pad_batch([self._item(p, s) for p, s in pairs], self.time_last)
        rows = self.rows[np.asarray([p for p, _ in pairs], dtype=np.int64)]
        return {
            self.kind: padded["data"],
            "lengths": padded["lengths"],
            "mask": padded["mask"],
            "label": torch.from_numpy(self.labels[rows].astype(np.int64)),
            "row": torch.from_numpy(rows),
        }
