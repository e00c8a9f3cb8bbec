"""The optimiser and learning-rate scheduler of a training run, and a network's own rate schedule.

`SERModule.configure_optimizers` builds them from the `model.optimizer` and `model.scheduler`
config nodes (`build_optimizers`); a network with parts trained at their own rates (a
pretrained encoder and its head) gives its parameter groups and, through
`training_step_schedule`, scales its encoder group's rate as training goes
(`scale_encoder_rate`, called at the start of every training batch).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from hydra.utils import instantiate

if TYPE_CHECKING:  # annotations only
    import pytorch_lightning as pl


def build_optimizers(
    net: torch.nn.Module,
    parameters: Iterable[torch.nn.Parameter],
    optimizer: dict,
    scheduler: dict | None,
    monitor: str,
) -> dict:
    """Build the optimizer (with the network's own parameter groups, if it has them) and scheduler.

    Args:
        net: The network, asked for its `parameter_groups`.
        parameters: Every trained parameter, optimised alike when the network has no groups.
        optimizer: The `model.optimizer` node (a partial `_target_` with its `lr`).
        scheduler: The `model.scheduler` node (a partial `_target_`), None or empty for none.
        monitor: The metric a scheduler is stepped on (`model.scheduler_monitor`).

    Returns:
        Lightning's optimizer dict; with a scheduler, stepped every epoch on `monitor`.
    """
    optimizer_factory = instantiate(optimizer)
    # A network with parts trained at their own rates (a pretrained encoder and its head)
    # gives its parameter groups; the optimizer's `lr` is the rate of the rest.
    parameter_groups = getattr(net, "parameter_groups", None)
    if parameter_groups is not None:
        built = optimizer_factory(params=parameter_groups(optimizer["lr"]))
    else:
        built = optimizer_factory(params=parameters)
    if not scheduler:
        return {"optimizer": built}
    return {
        "optimizer": built,
        "lr_scheduler": {
            "scheduler": instantiate(scheduler)(optimizer=built),
            "monitor": monitor,
            "interval": "epoch",
            "frequency": 1,
        },
    }


def scale_encoder_rate(net: torch.nn.Module, trainer: pl.Trainer, epoch: int, step: int) -> None:
    """Tell a network that schedules its own parts where training is, and scale its encoder's rate.

    Such a network has `training_step_schedule` (a pretrained encoder frozen for the first
    epochs, then warmed up); the rate of the optimizer's `encoder` group is scaled as it says.
    The scale is divided out before the next one is applied, so that the shared schedule's
    changes to that rate (plateau, cosine) compose with it, and it is kept in the group, so
    that a resumed run goes on.

    Args:
        net: The network; one without `training_step_schedule` is left alone.
        trainer: The Lightning trainer (its batches per epoch, gradient accumulation and
            optimizers).
        epoch: The current epoch.
        step: The current global (optimizer) step.
    """
    schedule = getattr(net, "training_step_schedule", None)
    if schedule is None:
        return
    steps_per_epoch = max(1, math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches))
    scale = schedule(epoch, step, steps_per_epoch)
    if scale is None:
        return
    for optimizer in trainer.optimizers:
        for group in optimizer.param_groups:
            if group.get("name") == "encoder":
                group["lr"] = group["lr"] / group.get("lr_scale", 1.0) * scale
                group["lr_scale"] = scale
