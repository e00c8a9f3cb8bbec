"""The valence-arousal plane: where a recording (and each of its speech segments) lies.

The web page draws it for a model with dimensions (task=dimensional or multitask), on the
training corpus's rating scale, from the answer's `dimensions` and its timeline's segments. The
values themselves come from the scoring pass (`inference.window_scores`); this module only draws.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure


def valence_arousal_figure(
    dimensions: dict[str, float], scale: dict, segments: list[dict] | None = None
) -> Figure:
    """Draw a recording's place on the valence-arousal plane, axes on the corpus's rating scale.

    Args:
        dimensions: the recording's values by name (`valence` and `arousal` are drawn).
        scale: the rating scale `{"low", "high"}`.
        segments: timeline records with `dimensions`, drawn as small numbered points (optional).

    Returns:
        The matplotlib figure (the caller closes it).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    low, high = scale["low"], scale["high"]
    middle = (low + high) / 2
    fig, ax = plt.subplots(figsize=(4.5, 4.5), constrained_layout=True)
    ax.axhline(middle, color="0.7", linewidth=1)
    ax.axvline(middle, color="0.7", linewidth=1)
    for i, segment in enumerate(s for s in segments or [] if s.get("dimensions")):
        values = segment["dimensions"]
        ax.plot(values["valence"], values["arousal"], "o", color="tab:gray", markersize=5)
        ax.annotate(
            str(i + 1),
            (values["valence"], values["arousal"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.plot(
        dimensions["valence"], dimensions["arousal"], "o", color="tab:red", markersize=12, label="recording"
    )
    for x, y, text, ha, va in (
        (high, high, "excited", "right", "top"),
        (low, high, "tense", "left", "top"),
        (low, low, "sad, tired", "left", "bottom"),
        (high, low, "calm, content", "right", "bottom"),
    ):
        ax.text(x, y, text, ha=ha, va=va, fontsize=8, color="0.45")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel(f"valence ({low:g}-{high:g})")
    ax.set_ylabel(f"arousal ({low:g}-{high:g})")
    ax.set_aspect("equal")
    ax.set_title("valence-arousal" + (" (grey: speech segments)" if segments else ""), fontsize=10)
    return fig
