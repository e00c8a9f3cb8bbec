"""Networks: plain nn.Modules that size themselves from the feature shape `(C, F, T)`."""

from ser_lightning.models.acnt import ACNT

__all__ = ["ACNT"]
