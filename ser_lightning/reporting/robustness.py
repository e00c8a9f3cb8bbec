"""The robustness report: the test split again under noise, reverberation, telephone band, codecs and gain.

`python -m ser_lightning.eval ckpt_path=... robustness=standard` scores the clips of the evaluated
split once clean and once under each condition of conf/robustness/standard.yaml:

- additive noise at each SNR (20 / 10 / 5 / 0 dB): `white` Gaussian noise, and `babble` made of
  other test clips;
- reverberation with a synthetic room impulse response;
- telephone band (8 kHz, 300-3400 Hz, 8-bit mu-law);
- lossy codecs at low bitrate: MP3 and Opus;
- a gain (-20 dB), applied before 16-bit quantisation.

A corrupted clip is then conditioned again as every file is (peak normalisation when the
checkpoint's audio settings have it; the gain condition then measures only quantisation) and
scored by the checkpoint's own features and network, like `predict`. Every condition draws from
its own seeded generator (`seed`, condition index): the report is reproducible.

How each corruption is made is in `reporting.robustness_corruptions`; this module lists the
conditions of a config, scores them and plots the table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ser_lightning.reporting.robustness_corruptions import (
    babble_noise,
    codec,
    gain,
    mix_at_snr,
    reverb,
    snr_db,
    telephone,
    white_noise,
)
from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)

NOISES = ("white", "babble")


@dataclass(frozen=True)
class Condition:
    """One corruption of the test clips.

    It holds a name for the table, its family and parameter, and the function
    `(clips (N, samples), speakers (N,), rng) -> corrupted clips`.
    """

    name: str
    family: str
    parameter: str
    apply: Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def standard_conditions(settings: dict, sample_rate: int) -> list[Condition]:
    """Build the conditions a robustness config (conf/robustness/*.yaml) lists, in its order.

    Args:
        settings: the config: `noises`, `snr_db`, `babble_talkers`, `reverb_rt60_s`,
            `telephone`, `codecs` and `gain_db`.
        sample_rate: the clips' sample rate.

    Returns:
        The noise conditions (each noise at each SNR), then reverberation, telephone, codecs and gain.

    Raises:
        InvalidSetting: when a noise is not one of `NOISES` or a codec not one of `CODECS`.
    """
    conditions = []
    talkers = int(settings.get("babble_talkers", 5))
    for noise in settings.get("noises", NOISES):
        if noise not in NOISES:
            raise InvalidSetting(f"robustness.noises: {noise!r} is not one of {NOISES}")
        make = white_noise if noise == "white" else babble_noise(talkers)
        for snr in settings.get("snr_db", ()):

            def apply(clips, speakers, rng, make=make, snr=float(snr)):
                return mix_at_snr(clips, make(clips, speakers, rng), snr)

            conditions.append(
                Condition(f"{noise} noise {snr:g} dB", f"{noise} noise", f"SNR {snr:g} dB", apply)
            )
    for rt60 in settings.get("reverb_rt60_s", ()):
        conditions.append(
            Condition(
                f"reverb RT60 {rt60:g} s",
                "reverberation",
                f"RT60 {rt60:g} s",
                reverb(float(rt60), sample_rate),
            )
        )
    if settings.get("telephone"):
        conditions.append(
            Condition(
                "telephone 8 kHz mu-law", "telephone", "8 kHz, 300-3400 Hz, mu-law", telephone(sample_rate)
            )
        )
    for item in settings.get("codecs", ()):
        name, bitrate = str(item["codec"]), int(item["bitrate"])
        conditions.append(
            Condition(
                f"{name} {bitrate // 1000} kbit/s",
                "codec",
                f"{name} {bitrate} bit/s",
                codec(name, bitrate, sample_rate),
            )
        )
    for db in settings.get("gain_db", ()):
        conditions.append(Condition(f"gain {db:+g} dB", "gain", f"{db:+g} dB", gain(float(db))))
    return conditions


# ------------------------------------------------------------------ scoring
def condition_clips(clips: np.ndarray, peak_normalize: bool) -> np.ndarray:
    """Do what the data pipeline does to every decoded file after decoding: peak normalisation.

    Args:
        clips: the clips, `(N, samples)`.
        peak_normalize: whether the checkpoint's audio settings normalise peaks.

    Returns:
        The clips as float32, each scaled to a peak of 1 when `peak_normalize` (silent clips as they are).
    """
    if not peak_normalize:
        return clips.astype(np.float32)
    peak = np.abs(clips).max(axis=1, keepdims=True)
    return np.where(peak > 0, clips / np.where(peak > 0, peak, 1.0), clips).astype(np.float32)


def robustness_table(
    score: Callable[[np.ndarray], dict],
    clips: np.ndarray,
    speakers: Sequence[str],
    conditions: Sequence[Condition],
    seed: int,
    peak_normalize: bool,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """UA, WA, macro-F1 (and UA's speaker interval) of the clean clips and of each condition.

    `score(waveforms)` returns a report's metrics (with `ua_low`, `ua_high` when it has them).

    Args:
        score: scores a stack of waveforms, in the order of `clips`.
        clips: the clean clips, `(N, samples)`.
        speakers: each clip's speaker (babble noise draws other speakers' clips).
        conditions: the corruptions to apply.
        seed: the seed of every condition's generator (seeded with (seed, condition index)).
        peak_normalize: whether clips are peak-normalised after corruption, as on loading.
        progress: called with each condition's name before it is scored.

    Returns:
        One row per condition, clean first: its name, family and parameter, the scores, the
        measured SNR (noise conditions) and `ua_change` from the clean UA.
    """
    speakers = np.asarray([str(s) for s in speakers])
    rows = []
    clean = score(condition_clips(clips, peak_normalize))
    rows.append(
        {"condition": "clean", "family": "clean", "parameter": "", **clean, "measured_snr_db": np.nan}
    )
    for index, condition in enumerate(conditions):
        if progress:
            progress(condition.name)
        rng = np.random.default_rng([seed, index])
        corrupted = condition.apply(clips.astype(np.float32), speakers, rng)
        measured = float(np.mean(snr_db(clips, corrupted))) if condition.family.endswith("noise") else np.nan
        rows.append(
            {
                "condition": condition.name,
                "family": condition.family,
                "parameter": condition.parameter,
                **score(condition_clips(corrupted, peak_normalize)),
                "measured_snr_db": measured,
            }
        )
    table = pd.DataFrame(rows)
    table["ua_change"] = table["ua"] - table.loc[0, "ua"]
    return table


def plot_robustness(table: pd.DataFrame, path, title: str = "") -> None:
    """Plot UA per condition as horizontal bars (speaker intervals as error bars), the clean UA dashed."""
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1.5))
    y = np.arange(len(table))[::-1]
    colors = ["#55A868" if f == "clean" else "#4C72B0" for f in table["family"]]
    err = None
    if {"ua_low", "ua_high"} <= set(table.columns) and table["ua_low"].notna().all():
        err = np.vstack([table["ua"] - table["ua_low"], table["ua_high"] - table["ua"]])
    ax.barh(y, table["ua"], xerr=err, color=colors, capsize=2)
    ax.set_yticks(y, table["condition"], fontsize=8)
    ax.axvline(
        table.loc[0, "ua"],
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"clean {table.loc[0, 'ua']:.3f}",
    )
    ax.set_xlim(0, 1)
    ax.set_xlabel("unweighted accuracy (UA)" + (", 95 % speaker intervals" if err is not None else ""))
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "UA per condition", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
