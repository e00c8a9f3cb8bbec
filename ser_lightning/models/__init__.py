"""Networks: plain nn.Modules that size themselves from the feature shape `(C, F, T)`."""

from ser_lightning.models.acnt import ACNT
from ser_lightning.models.cnn2ch import CNN2Ch
from ser_lightning.models.cnn_bilstm_mha import CNNBiLSTMMHA
from ser_lightning.models.crnn_attn import CRNNAttention
from ser_lightning.models.requirements import (
    IncompatibleFeaturesError,
    InputRequirement,
    build_network,
    check_compatible,
)
from ser_lightning.models.ssl_finetune import SSLFinetune
from ser_lightning.models.ssl_head import EmoBoxHead, SSLHead
from ser_lightning.models.vector import LinearHead, MLPHead

__all__ = [
    "ACNT",
    "CNN2Ch",
    "CNNBiLSTMMHA",
    "CRNNAttention",
    "EmoBoxHead",
    "IncompatibleFeaturesError",
    "InputRequirement",
    "LinearHead",
    "MLPHead",
    "SSLFinetune",
    "SSLHead",
    "build_network",
    "check_compatible",
]
