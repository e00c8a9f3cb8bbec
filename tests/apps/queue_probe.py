"""A Hydra application that records what a launcher gave it: its devices, threads, folder, mode.

Run by tests/test_gpu_queue.py through real multiruns of the GPU queue launcher. It imports
nothing but Hydra, so that each job starts in a second. Its result is (x - 2)^2, written to
job_status.json as the project's jobs do, and `fail_at=x` makes the job with that x fail.
"""

import json
import os
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(version_base=None, config_path="conf", config_name="queue_probe")
def main(cfg) -> float:
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    seen = {
        "x": cfg.x,
        "mode": str(HydraConfig.get().mode),
        "argv": sys.argv[1:],
        "environment": {
            name: value
            for name, value in os.environ.items()
            if name in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS") or name.startswith("SER_LIGHTNING_")
        },
    }
    (output_dir / "probe.json").write_text(json.dumps(seen))
    time.sleep(cfg.sleep_s)
    if cfg.x == cfg.fail_at:
        raise RuntimeError(f"asked to fail at x={cfg.x}")
    result = float((cfg.x - 2) ** 2)
    (output_dir / "job_status.json").write_text(json.dumps({"status": "ok", "result": result}))
    return result


if __name__ == "__main__":
    main()
