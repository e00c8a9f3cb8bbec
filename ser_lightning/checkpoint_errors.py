"""The error a file that is not a loadable ser_lightning checkpoint raises.

Its own module so that the format and safe loading (`ser_lightning.checkpoint`), the checks of
the stored configs (`ser_lightning.checkpoint_vetting`) and the encoder files a checkpoint may
read (`ser_lightning.checkpoint_encoder`) raise the one type; `ser_lightning.checkpoint`
exports it with the loading functions that raise it.
"""

from __future__ import annotations

from ser_lightning.utils.errors import UserError


class CheckpointError(UserError, ValueError):
    """A file that is not a loadable ser_lightning checkpoint; the message names the file and why."""
