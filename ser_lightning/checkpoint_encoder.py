"""Which encoder files a checkpoint of a pretrained encoder may make this machine read.

A checkpoint is a file from anyone (`ser_lightning.checkpoint`); the folders and files its
features or network config names are this machine's, so `EncoderFiles` decides which of them
are read: the user's `encoder` and `encoder_weights` settings, or stored ones inside
`paths.models_dir` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ser_lightning.checkpoint_errors import CheckpointError


@dataclass(frozen=True)
class EncoderFiles:
    """Which files a checkpoint of a pretrained encoder (`features=ssl`, `model=ssl_finetune`) may load.

    Its features config names the encoder it was trained with: a registry name (the weights
    come from the Hugging Face cache), or a folder or file on the machine that trained it. A
    file someone else made must not choose which of this machine's files are read, so a stored
    folder or file is read only inside `models_dir` (`paths.models_dir` for the commands);
    `encoder` and `weights`, named by the user, replace the stored ones. The weights' digest,
    kept in the checkpoint, must still match.
    """

    encoder: str | None = None
    weights: str | None = None
    models_dir: str | None = None

    @classmethod
    def of_command(cls, cfg) -> EncoderFiles:
        """Return the settings named in the config of eval, predict or export.

        They are read from `encoder`, `encoder_weights` and `paths.models_dir`.
        """
        encoder, weights = cfg.get("encoder"), cfg.get("encoder_weights")
        return cls(
            None if encoder is None else str(encoder),
            None if weights is None else str(weights),
            str(cfg.paths.models_dir),
        )

    def apply(self, node: dict, where: str, node_path: str) -> dict:
        """Put the user's encoder files into a features or network config, vetting its stored paths.

        A config that builds no pretrained encoder (whose class does not say
        `reads_encoder_files`, as `features=ssl` and `model=ssl_finetune` do) is left as it is.

        Args:
            node: The stored features or network config.
            where: The checkpoint's name, for error messages.
            node_path: The config's place in the checkpoint ("features", "model.net").

        Returns:
            `node` itself when it reads no encoder files; otherwise a copy with the user's
            `encoder` and `weights` in place of the stored ones.

        Raises:
            CheckpointError: If a stored encoder folder or weights file the user did not
                replace lies outside `models_dir`.
        """
        from hydra.utils import get_class

        # Whatever keys the stored node has: a node that names only `weights` (its encoder then a
        # default) reads a file too, and every stored path is vetted whenever encoder files are read.
        target = node.get("_target_")
        if not isinstance(target, str) or not getattr(get_class(target), "reads_encoder_files", False):
            return node
        from ser_lightning.features.ssl import ENCODERS

        node = dict(node)
        for key, named, option in (
            ("encoder", self.encoder, "encoder"),
            ("weights", self.weights, "encoder_weights"),
        ):
            if named is not None:
                node[key] = str(named)
                continue
            stored = node.get(key)
            if stored is None or (key == "encoder" and stored in ENCODERS):
                continue
            if not self._inside_models_dir(str(stored)):
                raise CheckpointError(
                    f"{where!r} was trained with {node_path}.{key}={stored!r}, outside this machine's models folder "
                    f"paths.models_dir={self.models_dir!r}; a checkpoint's encoder files are read only inside it. "
                    f"To use that {'folder' if key == 'encoder' else 'file'} (or a copy), name it yourself: "
                    f"{option}={stored}"
                )
        return node

    def _inside_models_dir(self, stored: str) -> bool:
        if not self.models_dir:
            return False
        models = Path(self.models_dir).expanduser().resolve()
        return Path(stored).expanduser().resolve().is_relative_to(models)
