"""What a network looks at: `eval explain=true` (docs/explanations.md).

Two views of a trained network on a split's clips, at most `max_clips` of them (taken class by
class in turn and each class's speakers in turn, so every class and speaker is represented):

- **Integrated gradients** (Captum) of each clip's *true* class logit with respect to the
  features the network sees (the normalised `(C, F, T)` input, log-mel bands by time for the
  spectral features), from an all-zero baseline: the corpus mean, as the features are
  normalised. Completeness makes them readable as shares: a clip's attributions add up to its
  logit minus the baseline's logit, up to Captum's convergence delta, which is recorded. They
  are averaged per class into one `F x T` map each (whole clips: each clip's frames averaged
  into `time_bins` stretches of its own length first, so clips of any length line up).
- **The penultimate layer**: the input of the network's final classifier layer (the last
  `Linear` whose output is the logits, found by a forward hook), projected to 2-D by PCA and
  coloured by emotion and by speaker. Its silhouette by emotion and by speaker (scikit-learn,
  on the full embedding, not the projection) says which of the two the network groups clips
  by: a speaker silhouette above the emotion one means it clusters by speaker.

Why PCA and not t-SNE: on the few dozen clips explained here t-SNE's picture depends on its
perplexity and seed and its distances between clusters mean nothing; PCA is deterministic,
linear, and says how much of the variance its two axes hold.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset

from ser_lightning.data.loading import collate_batch
from ser_lightning.utils.errors import InvalidSetting

if TYPE_CHECKING:
    from ser_lightning.data.datamodule import SERDataModule
    from ser_lightning.model import SERModel

log = logging.getLogger("ser_lightning.eval")


@dataclass(frozen=True)
class ExplainSettings:
    """How many clips are explained and how finely.

    Attributes:
        max_clips: the most clips explained (chosen class by class in turn, in table order).
        steps: integration steps of integrated gradients (more: a smaller convergence delta).
        batch_size: clips per forward pass.
        time_bins: for whole clips, the stretches each clip's frames are averaged into.
    """

    max_clips: int = 64
    steps: int = 32
    batch_size: int = 8
    time_bins: int = 32

    def __post_init__(self):
        for name in ("max_clips", "steps", "batch_size", "time_bins"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidSetting(
                    f"explain_settings.{name}={value!r} must be a whole number of at least 1"
                )

    @classmethod
    def from_config(cls, settings: dict | None) -> ExplainSettings:
        """The settings of eval's `explain_settings` (plain values; None: the defaults).

        Returns:
            The settings.

        Raises:
            InvalidSetting: for a key that is not a setting, naming the ones there are.
        """
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(cls.__dataclass_fields__))
        if unknown:
            raise InvalidSetting(
                f"explain_settings has no {unknown}; its settings are {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**settings)


def chosen_positions(labels: np.ndarray, speakers: np.ndarray, max_clips: int) -> np.ndarray:
    """Pick at most `max_clips` positions: one of each class in turn, each class's speakers in turn.

    Args:
        labels: the class index of each clip of the split, in table order.
        speakers: each clip's speaker, in the same order.
        max_clips: the most positions picked.

    Returns:
        The picked positions, sorted.
    """
    queues = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        # the n-th clip of every speaker before the (n+1)-th of any: speakers alternate
        turn = pd.Series(speakers[members]).groupby(speakers[members]).cumcount().to_numpy()
        queues.append(list(members[np.lexsort((members, turn))]))
    picked: list[int] = []
    while len(picked) < max_clips and any(queues):
        for queue in queues:
            if queue and len(picked) < max_clips:
                picked.append(int(queue.pop(0)))
    return np.sort(np.asarray(picked, dtype=np.int64))


def classifier_layer(
    model: SERModel, features: torch.Tensor, lengths: torch.Tensor | None
) -> torch.nn.Linear:
    """Find the network's final classifier layer: the last `Linear` whose output is the logits.

    Args:
        model: the model.
        features: a batch of its normalised inputs.
        lengths: their frame lengths (whole clips), or None.

    Returns:
        The layer whose input is the penultimate embedding.

    Raises:
        InvalidSetting: when no Linear layer gives the logits (a network whose last step is not
            a linear classifier), naming the network.
    """
    candidates = [m for m in model.net.modules() if isinstance(m, torch.nn.Linear)]
    outputs: dict[int, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda mod, args, out, i=i: outputs.__setitem__(i, out.detach()))
        for i, m in enumerate(candidates)
        if m.out_features == len(model.labels)
    ]
    try:
        with torch.no_grad():
            logits = model(features, lengths)
    finally:
        for hook in hooks:
            hook.remove()
    for i in sorted(outputs, reverse=True):
        if outputs[i].shape == logits.shape and torch.allclose(outputs[i], logits, atol=1e-5):
            return candidates[i]
    raise InvalidSetting(
        f"explain=true draws the embedding that enters the network's final Linear layer, but no Linear "
        f"layer of {type(model.net).__name__} gives its logits; run eval without explain=true"
    )


@contextlib.contextmanager
def _gradients_on(device: torch.device):
    # cuDNN's recurrent layers take gradients only in training mode; eval mode keeps dropout off
    flags = torch.backends.cudnn.flags(enabled=False) if device.type == "cuda" else contextlib.nullcontext()
    with torch.inference_mode(False), torch.enable_grad(), flags:
        yield


def _per_clip_map(attribution: torch.Tensor, frames: int | None, time_bins: int) -> torch.Tensor:
    # one clip's (C, F, T) attributions as averaged per class; a whole clip's frames binned in time
    if frames is None:
        return attribution
    real = attribution[..., :frames]
    flat = real.reshape(1, -1, frames)
    return torch.nn.functional.adaptive_avg_pool1d(flat, time_bins).reshape(*real.shape[:-1], time_bins)


@dataclass
class Explanations:
    """What `explain_clips` computed: per-clip values and per-class means.

    Attributes:
        rows: the clips' table rows.
        labels: their true class indices.
        predicted: their predicted class indices.
        class_maps: `(K, C, F, T')` mean attribution per class (zeros for a class with no clip).
        counts: clips per class.
        band_contributions: `(N, F)` each clip's attributions summed over channels and frames.
        embeddings: `(N, D)` the penultimate layer.
        deltas: `(N,)` Captum's convergence delta (attributions' sum minus the logit difference).
        logit_gaps: `(N,)` the true class logit minus the baseline's.
    """

    rows: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    class_maps: np.ndarray
    counts: np.ndarray
    band_contributions: np.ndarray
    embeddings: np.ndarray
    deltas: np.ndarray
    logit_gaps: np.ndarray


def explain_clips(
    model: SERModel, datamodule: SERDataModule, split: str, device: torch.device, settings: ExplainSettings
) -> Explanations:
    """Integrated gradients and penultimate embeddings of at most `settings.max_clips` clips of a split.

    Args:
        model: the scored model.
        datamodule: the set-up data module the split belongs to.
        split: "test", "val", "train" or "all" (the test split of `data.split=test_only`).
        device: where the model runs.
        settings: how many clips, integration steps, batch size and time bins.

    Returns:
        The explanations.

    Raises:
        InvalidSetting: when the split is empty or the network has no final Linear layer.
    """
    from captum.attr import IntegratedGradients

    name = "test" if split == "all" else split
    manifest = datamodule.manifest
    split_rows = np.asarray(manifest.indices[name])
    if len(split_rows) == 0:
        raise InvalidSetting(f"explain=true: the {name} split holds no clips to explain")
    table = manifest.table.iloc[split_rows]
    speakers = table["actor"].astype(str).to_numpy() if "actor" in table else np.zeros(len(table), str)
    positions = chosen_positions(np.asarray(manifest.labels)[split_rows], speakers, settings.max_clips)
    loader = DataLoader(
        Subset(datamodule.dataset(name), positions.tolist()),
        batch_size=settings.batch_size,
        shuffle=False,
        collate_fn=collate_batch,
    )
    model = model.to(device).eval()
    k = len(model.labels)
    layer: torch.nn.Linear | None = None
    rows, labels, predicted, maps, bands, embeddings, deltas, gaps = [], [], [], [], [], [], [], []
    captured: list[torch.Tensor] = []
    done = 0
    with _gradients_on(device):
        for batch in loader:
            batch = {key: v.to(device) if isinstance(v, torch.Tensor) else v for key, v in batch.items()}
            lengths = batch.get("lengths")
            with torch.no_grad():
                inputs = model.inputs(batch).float()
            if layer is None:
                layer = classifier_layer(model, inputs, lengths)
            captured.clear()
            hook = layer.register_forward_hook(lambda mod, args, out: captured.append(args[0].detach()))
            try:
                with torch.no_grad():
                    logits = model(inputs, lengths)
            finally:
                hook.remove()
            target = batch["label"].long()
            gradients = IntegratedGradients(lambda x, n=None: model(x, n))
            attributions, delta = gradients.attribute(
                inputs,
                baselines=torch.zeros_like(inputs),
                target=target,
                additional_forward_args=(lengths,) if lengths is not None else None,
                n_steps=settings.steps,
                return_convergence_delta=True,
            )
            with torch.no_grad():
                base_logits = model(torch.zeros_like(inputs), lengths)
            rows.append(batch["row"].cpu().numpy())
            labels.append(target.cpu().numpy())
            predicted.append(logits.argmax(dim=1).cpu().numpy())
            embeddings.append(captured[0].reshape(len(inputs), -1).float().cpu().numpy())
            deltas.append(delta.detach().cpu().numpy())
            picked = torch.arange(len(inputs), device=device)
            gaps.append((logits[picked, target] - base_logits[picked, target]).cpu().numpy())
            attributions = attributions.detach().float().cpu()
            frames = lengths.cpu().tolist() if lengths is not None else [None] * len(inputs)
            for attribution, n in zip(attributions, frames, strict=True):
                real = attribution if n is None else attribution[..., : int(n)]
                bands.append(real.sum(dim=(0, 2)).numpy())
                maps.append(
                    _per_clip_map(attribution, None if n is None else int(n), settings.time_bins).numpy()
                )
            done += len(inputs)
            log.info(
                "explained %d/%d clips (integrated gradients, %d steps)", done, len(positions), settings.steps
            )
    labels_all = np.concatenate(labels)
    per_clip = np.stack(maps)
    class_maps = np.zeros((k, *per_clip.shape[1:]), dtype=np.float64)
    counts = np.bincount(labels_all, minlength=k)
    for c in range(k):
        if counts[c]:
            class_maps[c] = per_clip[labels_all == c].mean(axis=0)
    return Explanations(
        rows=np.concatenate(rows),
        labels=labels_all,
        predicted=np.concatenate(predicted),
        class_maps=class_maps,
        counts=counts,
        band_contributions=np.stack(bands),
        embeddings=np.concatenate(embeddings),
        deltas=np.concatenate(deltas),
        logit_gaps=np.concatenate(gaps),
    )


def explain(
    model: SERModel,
    datamodule: SERDataModule,
    split: str,
    device: torch.device,
    settings: ExplainSettings,
    output_dir: Path,
) -> dict:
    """Explain a split's clips and write the files (what `eval explain=true` runs).

    Args:
        model: the scored model.
        datamodule: its set-up data module.
        split: the split eval scored.
        device: where the model runs.
        settings: how many clips and how finely.
        output_dir: the eval run folder.

    Returns:
        The summary written as `explanations/explanations.json`.
    """
    from ser_lightning.reporting.explanations_files import EXPLANATIONS_DIR, write_explanations

    explained = explain_clips(model, datamodule, split, device, settings)
    summary = write_explanations(explained, datamodule, model, settings, output_dir)
    emb = summary["embedding"]
    log.info(
        "explanations of %d clips in %s: silhouette by emotion %s, by speaker %s (clusters by %s)",
        summary["clips"],
        Path(output_dir) / EXPLANATIONS_DIR,
        _fmt(emb["silhouette_emotion"]),
        _fmt(emb["silhouette_speaker"]),
        emb["clusters_by"],
    )
    return summary


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
