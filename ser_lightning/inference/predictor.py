"""Class probabilities from a trained SERModule, for labelled splits (eval) and new files (predict).

Both go through the module's own `inputs` (its feature extractor and normalisation, restored
from the checkpoint) and `forward`, the code path training and testing used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ser_lightning.data.audio import AudioDecodeError
from ser_lightning.data.datamodule import collate_batch
from ser_lightning.inference.media import InputError, read_media
from ser_lightning.inference.windows import ClipWindows, clip_windows

log = logging.getLogger(__name__)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` is the GPU when there is one, else the CPU; anything else is passed to torch."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"device={device!r} is not a torch device (auto, cpu, cuda, cuda:1, mps): {err}"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} asks for a GPU, but torch sees none here; use device=auto or cpu"
        )
    return resolved


@dataclass
class FilePrediction:
    """A scored file: its mean probabilities and the probabilities of each window."""

    path: str
    labels: list[str]
    probabilities: np.ndarray  # (K,) mean over windows
    window_probabilities: np.ndarray  # (W, K)
    window_spans: list[tuple[float, float]]  # seconds
    duration: float  # seconds of the decoded file

    @property
    def predicted(self) -> str:
        return self.labels[int(self.probabilities.argmax())]

    @property
    def confidence(self) -> float:
        return float(self.probabilities.max())


class Predictor:
    """Batched scoring with a trained module on a device (GPU when available)."""

    def __init__(self, module, device: str | torch.device = "auto", batch_size: int = 32):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        self.device = resolve_device(device)
        self.module = module.to(self.device).eval()
        self.batch_size = batch_size
        self.labels = list(module.labels)
        self.audio = module.audio

    @torch.inference_mode()
    def _probabilities(self, key: str, batch: torch.Tensor) -> np.ndarray:
        inputs = self.module.inputs({key: batch.to(self.device, non_blocking=True)})
        return torch.softmax(self.module(inputs).float(), dim=-1).cpu().numpy()

    def waveform_probabilities(self, waveforms: np.ndarray | torch.Tensor) -> np.ndarray:
        """Probabilities `(N, K)` of fixed-length waveforms `(N, samples)`."""
        waveforms = torch.as_tensor(np.asarray(waveforms, dtype=np.float32))
        out = [
            self._probabilities("waveform", waveforms[i : i + self.batch_size])
            for i in range(0, len(waveforms), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), dtype=np.float32)

    def dataset_probabilities(
        self, dataset, num_workers: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, labels, probabilities) of a data module's dataset of cached features."""
        loader = DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda",
            collate_fn=collate_batch,
        )
        rows, labels, probabilities = [], [], []
        for batch in loader:
            key = "features" if "features" in batch else "waveform"
            probabilities.append(self._probabilities(key, batch[key]))
            rows.append(batch["row"].numpy())
            labels.append(batch["label"].numpy())
        return np.concatenate(rows), np.concatenate(labels), np.concatenate(probabilities)

    # ------------------------------------------------------------------ files
    def _decode(self, path: Path, hop: float, long_clips: str) -> ClipWindows | InputError:
        try:
            wave = read_media(path, self.audio.sample_rate)
        except AudioDecodeError as err:
            return InputError(str(path), str(err))
        if len(wave) == 0:
            return InputError(str(path), f"{str(path)!r} decodes to no audio samples (an empty recording)")
        return clip_windows(wave, self.audio, hop, long_clips)

    def predict_files(
        self,
        paths: Iterable[str | Path],
        hop: float | None = None,
        long_clips: str = "windows",
        decode_workers: int = 4,
    ) -> Iterator[FilePrediction | InputError]:
        """Score files in order; unreadable ones come back as InputError and the rest go on.

        Files are decoded in parallel threads a group at a time and their windows batched
        together, so short clips fill batches and long recordings are never all in memory.
        `hop` (seconds between windows of long clips) defaults to half the model's window.
        """
        hop = self.audio.duration / 2 if hop is None else hop
        paths = [Path(p) for p in paths]
        group = max(self.batch_size, 8)

        def decode(path: Path) -> ClipWindows | InputError:
            return self._decode(path, hop, long_clips)

        # one file (the latency case) is decoded here: starting a thread pool would cost more
        parallel = len(paths) > 1 and decode_workers > 1
        with ThreadPoolExecutor(max_workers=decode_workers) if parallel else nullcontext() as pool:
            decode_all = pool.map if parallel else map
            for start in range(0, len(paths), group):
                chunk = paths[start : start + group]
                yield from self._score(chunk, list(decode_all(decode, chunk)))

    def _score(
        self, paths: list[Path], decoded: list[ClipWindows | InputError]
    ) -> Iterator[FilePrediction | InputError]:
        clips = [d for d in decoded if isinstance(d, ClipWindows)]
        # (clip, window) pairs in order, scored in batches that may span clips
        pairs = [(c, w) for c, clip in enumerate(clips) for w in range(len(clip))]
        scores = np.zeros((len(pairs), len(self.labels)), dtype=np.float32)
        for i in range(0, len(pairs), self.batch_size):
            batch = pairs[i : i + self.batch_size]
            waves = np.stack([clips[c].window_view(w) for c, w in batch]).astype(np.float32, copy=False)
            scores[i : i + len(batch)] = self._probabilities("waveform", torch.from_numpy(waves))
        offsets = np.cumsum([0] + [len(c) for c in clips])
        c = 0
        for path, item in zip(paths, decoded, strict=True):
            if isinstance(item, InputError):
                yield item
                continue
            windows = scores[offsets[c] : offsets[c + 1]]
            c += 1
            yield FilePrediction(
                str(path), self.labels, windows.mean(axis=0), windows, item.spans(), item.clip_seconds
            )
