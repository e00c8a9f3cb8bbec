"""Writing a demo corpus into an empty folder: actor folders, 16-bit WAV files, manifest last."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from ser_lightning.demo_corpus.design import (
    DEFAULT_SPEC,
    DemoCorpusSpec,
    DemoUtterance,
    actor_folder,
    iter_demo_utterances,
)
from ser_lightning.demo_corpus.manifest import write_manifest
from ser_lightning.demo_corpus.synthesis import synthesize_utterance


def generate_demo_corpus(
    root: str | Path, spec: DemoCorpusSpec = DEFAULT_SPEC, progress: bool = True
) -> Path:
    """Write the corpus under root (which must not exist or be empty).

    The manifest is written last, so a corpus without one is known to be unfinished. Prefer
    ensure_demo_corpus, which also makes the write atomic and safe under concurrency.

    Args:
        root: the folder to write the corpus into.
        spec: the corpus to write.
        progress: show a progress bar.

    Returns:
        `root`.

    Raises:
        FileExistsError: `root` exists and is not an empty folder.
    """
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{str(root)!r} exists and is not an empty folder; demo corpus not written")
    root.mkdir(parents=True, exist_ok=True)
    utterances = list(iter_demo_utterances(spec))
    for actor in range(1, spec.num_actors + 1):
        (root / actor_folder(actor)).mkdir()

    def write(utterance: DemoUtterance) -> None:
        audio = synthesize_utterance(spec, utterance)
        sf.write(
            root / utterance.relative_path,
            _to_pcm16(audio),
            spec.sample_rate,
            subtype="PCM_16",
            format="WAV",
        )

    if progress:
        _with_progress_bar(utterances, write)
    else:
        for utterance in utterances:
            write(utterance)

    write_manifest(root, spec)
    return root


def _to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.round(audio * 32767.0).astype(np.int16)


def _with_progress_bar(utterances: list[DemoUtterance], write: Callable[[DemoUtterance], None]) -> None:
    """Write every utterance under a progress bar: the full corpus takes minutes."""
    from ser_lightning.utils.progress import progress_bar  # rich loads only when a bar is shown

    with progress_bar() as bar:
        task = bar.add_task("demo corpus: files", total=len(utterances))
        for utterance in utterances:
            write(utterance)
            bar.advance(task)
