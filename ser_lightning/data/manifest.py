"""The prepare step: corpus folder → utterance table → screening → split, as one manifest.

`CorpusSource` says which files a run reads and which emotions it keeps (the corpus parser at
its folder, the label map and label set, the demo generator for data=demo, the bad-file policy).
`prepare_manifest` scans the corpus, renames emotions by the label map, re-indexes the labels to the run's label order, screens out
files that cannot be decoded, applies the bad-file policy and splits: the `Manifest` it returns
is what every later step reads (the feature store, the datasets, the checkpoint record, the
split.csv written beside the run).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ser_lightning.data.cache import ArrayCache
from ser_lightning.data.corpora import build_corpus
from ser_lightning.data.dimension_targets import with_demo_dimensions
from ser_lightning.data.label_sets import (
    check_label_map,
    check_label_spec,
    harmonise,
    relabel,
    resolve_label_names,
)
from ser_lightning.data.provenance import files_fingerprint
from ser_lightning.data.quality import SkipPolicy, screen_audio
from ser_lightning.data.splits import SPLIT_NAMES, Splitter, split_indices
from ser_lightning.data.utterances import CorpusScan, relative_paths
from ser_lightning.data.vote_targets import with_demo_votes
from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)


class CorpusSource:
    """Which files a run reads and which emotions it classifies.

    Built from `data.corpus`, `data.root`, `data.vocal_channels`, `data.corpus_options`,
    `data.labels`, `data.demo`, `data.on_error`, `data.max_skip_fraction` and `data.label_map`
    (corpus emotion names renamed before the label filter; see data/label_sets.py).
    """

    def __init__(
        self,
        corpus: str,
        root: str,
        vocal_channels: tuple[str, ...] | list[str] = ("speech",),
        corpus_options: dict | None = None,
        labels: str | list[str] = "all",
        demo: dict | None = None,
        on_error: str = "skip",
        max_skip_fraction: float = 0.05,
        label_map: dict[str, str] | None = None,
    ):
        self.root = str(Path(root).expanduser())
        self.parser = build_corpus(corpus, self.root, vocal_channels, corpus_options)
        self.label_spec = check_label_spec(labels)
        self.label_map = check_label_map(label_map)
        self.demo = dict(demo) if demo else None
        self.skip_policy = SkipPolicy(on_error, max_skip_fraction)
        self._label_names: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        """The corpus parser's name (`data.corpus`)."""
        return self.parser.name

    def raw_scan(self) -> CorpusScan:
        """Scan every file the parser recognises (generating the demo corpus first when asked to).

        Returns:
            The parser's scan: all its emotions, nothing screened or relabelled; the demo
            corpus's rows carry its arousal, valence and dominance (demo_corpus/dimensions.py)
            and its simulated votes (demo_corpus/votes.py).
        """
        if self.demo is not None:
            from ser_lightning.demo_corpus import DemoCorpusSpec, ensure_demo_corpus

            ensure_demo_corpus(self.root, DemoCorpusSpec(**self.demo))
            spec = DemoCorpusSpec(**self.demo)
            return with_demo_votes(with_demo_dimensions(self.parser.scan(), spec), spec)
        return self.parser.scan()

    @property
    def label_names(self) -> tuple[str, ...]:
        """The emotions this run classifies, in EMOTIONS order (data.labels; see data/label_sets.py).

        data.labels=corpus scans the corpus here, so that the model can be sized before setup.
        """
        if self._label_names is None:
            present = (
                harmonise(self.raw_scan().table, self.label_map)["emotion"]
                if self.label_spec == "corpus"
                else ()
            )
            self._label_names = resolve_label_names(self.label_spec, present)
        return self._label_names

    def scan(self, cache: ArrayCache, decode_workers: int | None = None) -> CorpusScan:
        """Scan the corpus's usable files of this run's emotions, `label` re-indexed to label_names.

        Files that cannot be decoded are screened out (the result is cached) and the bad-file
        policy is applied.

        Args:
            cache: the cache the screening result is kept in.
            decode_workers: threads that screen files; None chooses by the number of files.

        Returns:
            The scan of the usable files.

        Raises:
            InvalidSetting: when no file has one of the run's emotions.
        """
        scan = self.raw_scan()
        scan.labelled_files_sha256 = files_fingerprint(relative_paths(scan.table, self.root))
        scan.table, left_out = relabel(harmonise(scan.table, self.label_map), self.label_names)
        scan.excluded_by_filter += left_out
        if scan.table.empty:
            raise InvalidSetting(
                f"no file of the corpus at {self.root} has one of the emotions data.labels asks for "
                f"({list(self.label_names)})"
                + (f" after data.label_map={self.label_map}" if self.label_map else "")
            )
        scan = screen_audio(scan, cache, decode_workers)  # undecodable files leave the table here
        if scan.rejected or scan.excluded_by_filter:
            log.warning("corpus %s: %s", self.root, scan.summary())
        self.skip_policy.enforce(scan)
        return scan


@dataclass
class Manifest:
    """The utterances of one run, their labels and their split."""

    root: str
    corpus: str
    label_names: tuple[str, ...]
    scan: CorpusScan
    splitter: Splitter
    assignment: pd.Series  # "train" / "val" / "test" per table row
    indices: dict[str, np.ndarray]  # table rows of each split, in table order
    # corpus emotion name -> the run's (data.label_map), applied before the label filter
    label_map: dict[str, str] = field(default_factory=dict)

    @property
    def table(self) -> pd.DataFrame:
        """The utterance table of the run's usable files, one row per clip."""
        return self.scan.table

    @property
    def labels(self) -> np.ndarray:
        """Class index of every table row (position in label_names)."""
        return self.table["label"].to_numpy()

    @property
    def split_sizes(self) -> dict[str, int]:
        """The number of clips in each split."""
        return {name: int(len(self.indices[name])) for name in SPLIT_NAMES}

    def class_weights(self) -> torch.Tensor:
        """Weigh the classes sklearn's "balanced" way, from the train split.

        Returns:
            n / (classes * count) per class, float32; 0 for a class the train split lacks.
        """
        labels = self.labels[self.indices["train"]]
        num_classes = len(self.label_names)
        counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
        weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
        return torch.tensor(weights, dtype=torch.float32)

    def protocol(self) -> dict:
        """Describe how this run's data was chosen and split, for summaries and loggers.

        Returns:
            The corpus, root and labels (with the label map, when there is one), the splitter's
            description and the split sizes.
        """
        return {
            "corpus": self.corpus,
            "root": self.root,
            "labels": list(self.label_names),
            **({"label_map": dict(self.label_map)} if self.label_map else {}),
            **self.splitter.describe(self.table),
            "split_sizes": self.split_sizes,
        }

    def split_table(self) -> pd.DataFrame:
        """The utterance table with its split column, paths relative to the corpus root.

        `label` is the class index of this run (position in label_names), as the model sees it.

        Returns:
            A copy of the table with `split` as its first column.
        """
        table = self.table.copy()
        table["path"] = relative_paths(table, self.root)
        table.insert(0, "split", self.assignment.to_numpy())
        return table

    def write_records(self, directory: str | Path) -> dict[str, Path]:
        """Write the split used (and any rejected files) next to the run.

        Args:
            directory: the run folder; created if needed.

        Returns:
            The written files: `split` (split.csv) and, when files were rejected, `rejected`
            (rejected_files.csv).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = {"split": directory / "split.csv"}
        self.split_table().to_csv(written["split"], index=False)
        if self.scan.rejected:
            written["rejected"] = directory / "rejected_files.csv"
            self.scan.rejected_frame().to_csv(written["rejected"], index=False)
        return written


def prepare_manifest(
    source: CorpusSource, splitter: Splitter, cache: ArrayCache, decode_workers: int | None = None
) -> Manifest:
    """Scan, screen and split the corpus.

    Args:
        source: the files and emotions of the run.
        splitter: the split protocol.
        cache: the cache of the screening results.
        decode_workers: threads that screen files; None chooses by the number of files.

    Returns:
        The run's manifest.

    Raises:
        InvalidSetting: when a split the protocol needs comes out empty (and see `CorpusSource.scan`).
    """
    scan = source.scan(cache, decode_workers)
    assignment = splitter(scan.table)
    indices = split_indices(assignment)
    empty = [name for name in splitter.required_splits() if len(indices[name]) == 0]
    if empty:
        raise InvalidSetting(
            f"split {splitter.name!r} left {empty} empty; the corpus at {source.root} is too small"
        )
    manifest = Manifest(
        source.root, source.name, source.label_names, scan, splitter, assignment, indices, source.label_map
    )
    log.info("split=%s: %s", splitter.name, manifest.split_sizes)
    return manifest
