"""ser_lightning: a Lightning + Hydra experiment framework for speech emotion recognition."""

from ser_lightning.utils.environment import check_compiled_dependencies

__version__ = "0.1.0"

# torch/torchaudio are a compiled pair: stop here, with the versions and the fix, if they do not
# load together (instead of a linker error from the first module that imports torchaudio).
check_compiled_dependencies()
