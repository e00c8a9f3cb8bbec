"""ser_lightning's Hydra launchers: `gpu_queue` (sweep jobs queued on GPUs of their own) and `ser_slurm`."""
