"""What a training run says when a batch's loss is NaN or inf, before any weight is touched.

`SERModule.training_step` checks the loss before backward: one such step would make every
weight NaN, and the run would go on at chance level with nothing but `nan` in its logs. It
stops with `NonFiniteLossError` instead, whose message names the batch's files and says
whether their features (a float WAV far outside [-1, 1] without peak normalisation) or the
network (a learning rate too high, half precision) are at fault.
"""

from __future__ import annotations

import pandas as pd
import torch

from ser_lightning.utils.errors import UserError


class NonFiniteLossError(UserError, RuntimeError):
    """A training batch's loss is NaN or inf; the message names the files and what to check."""


def batch_files(batch: dict, table: pd.DataFrame | None) -> list[str]:
    """Return a name for each item of a batch: its file, from the data module's table row `row`.

    Args:
        batch: The training batch (with `label`, and `row` when the data module gives it).
        table: The data module's manifest table, None when there is none.

    Returns:
        Each item's file path; its row number, or its place in the batch, where the file is
        not known.
    """
    if "row" not in batch:
        return [f"item {i} of the batch" for i in range(len(batch["label"]))]
    rows = torch.as_tensor(batch["row"]).flatten().tolist()
    if table is None or "path" not in table:
        return [f"row {row}" for row in rows]
    return [str(table["path"].iloc[row]) for row in rows]


def non_finite_loss_message(
    loss: torch.Tensor, inputs: torch.Tensor, files: list[str], epoch: int, step: int
) -> str:
    """Say why a batch's loss is not finite, and what to do.

    Args:
        loss: The batch's loss, NaN or inf.
        inputs: The batch's normalised features, `(batch, C, F, T)`.
        files: Each item's file (`batch_files`).
        epoch: The current epoch, for the message.
        step: The current global step, for the message.

    Returns:
        The message: the files whose features are not finite, or, when all are finite, that
        the network diverged, with the settings to change and the batch's files.
    """
    head = f"training stopped: the training loss is {loss.item()} at epoch {epoch}, step {step}."
    bad = (~torch.isfinite(inputs.detach()).flatten(1).all(dim=1)).nonzero().flatten().tolist()
    if bad:
        listed = "\n".join(f"  {files[i]}" for i in bad)
        return (
            f"{head} The features of {len(bad)} of the batch's {len(files)} files are not finite:\n"
            f"{listed}\nCheck these files: a float WAV with samples far outside [-1, 1] (written unscaled) "
            "overflows the features when data.peak_normalize=false; rescale or remove the files, or set "
            "data.peak_normalize=true."
        )
    listed = "\n".join(f"  {file}" for file in files)
    return (
        f"{head} The features of its files are finite, so the network diverged: lower "
        "model.optimizer.lr, clip gradients (trainer.gradient_clip_val=1.0), or train in full "
        f"precision (trainer.precision=32-true). The batch's files:\n{listed}"
    )
