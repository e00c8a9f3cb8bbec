"""ser_lightning: a Lightning + Hydra experiment framework for speech emotion recognition."""

from ser_lightning.utils.environment import guard_compiled_dependencies
from ser_lightning.utils.numba_cache import configure_numba_cache_dir

__version__ = "0.1.0"

# Before anything imports numba (librosa, via the feature and augmentation modules): librosa's
# compiled functions are cached in a folder of ours, written one process at a time
# (ser_lightning.utils.numba_cache; NUMBA_CACHE_DIR set by the user wins).
configure_numba_cache_dir()

# torch/torchaudio are a compiled pair: the first import of torchaudio (from whichever module)
# stops with the versions and the fix if they do not load together, instead of a linker error.
# Checked then, not now: the ONNX backend (predict/serve backend=onnx) never imports torch.
guard_compiled_dependencies()
