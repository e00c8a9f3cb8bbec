"""Hydra launcher `ser_slurm`: the submitit SLURM launcher, also on clusters without accounting.

submitit follows the jobs it waits for with `sacct`. Where SLURM keeps no accounting
(`AccountingStorageType=accounting_storage/none`, common on small clusters) every such call
fails: submitit then logs `Bypassing sacct error ... status may be inaccurate` and sacct prints
`Slurm accounting storage is disabled`, each time, for the whole length of the sweep. This
launcher asks `sacct` once before submitting; when it cannot answer, it says so in one line and
follows the jobs with `squeue` instead, which the controller answers without accounting (a job
that has left the queue is known to be done from the result file it wrote, as before).

It also leaves GPUs out of the request of a CPU job: `gpus_per_node` follows `trainer.devices`
(one task per device, so that SLURM starts the DDP ranks), which for `trainer.accelerator=cpu`
counts processes, not GPUs.
"""

# No `from __future__ import annotations` here: Hydra's plugin scan executes this module outside
# sys.modules, where dataclasses cannot resolve string annotations.
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

log = logging.getLogger(__name__)


@dataclass
class SERSlurmQueueConf(SlurmQueueConf):
    """submitit's SLURM settings, for the launcher below."""

    _target_: str = "hydra_plugins.ser_lightning_launchers.slurm.SERSlurmLauncher"


ConfigStore.instance().store(
    group="hydra/launcher", name="ser_slurm", node=SERSlurmQueueConf, provider="ser_lightning"
)


class SERSlurmLauncher(SlurmLauncher):
    """submitit's SLURM launcher, following jobs with squeue where sacct fails; no GPUs for CPU jobs."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Submit one SLURM job per override list and wait for their results.

        Returns:
            The jobs' results, in the order of `job_overrides`.
        """
        assert self.config is not None
        if str(self.config.trainer.get("accelerator", "")) == "cpu":
            self.params["gpus_per_node"] = None
        # imported here: Hydra imports this module at every start, to find its plugins
        from ser_lightning.utils.slurm_states import job_states_from_squeue_where_sacct_fails

        with job_states_from_squeue_where_sacct_fails():
            return super().launch(job_overrides, initial_job_idx)
