"""One protocol per study table: results measured differently are not set side by side.

Each finished job's `summary.json` carries its protocol card (`ser_lightning.data.protocol_card`).
A study report, and its `--compare`, stop when the jobs' cards have different hashes, naming the
jobs and the fields that differ, unless `--allow-protocol-mismatch` is given: then the report
says so at its top and lists each job's protocol. Jobs whose summary has no card (written by an
older version) are left out of the check and counted.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from ser_lightning.data.protocol_card import differing_fields
from ser_lightning.utils.errors import UserError

log = logging.getLogger(__name__)

# results.csv's column of each job's protocol hash ("/": never a setting of the configuration)
PROTOCOL = "protocol/hash"


class ProtocolMismatch(UserError, ValueError):
    """A study's results were measured under different protocols; the message says how they differ."""


def job_card(sweep_dir: Path, job: str) -> dict | None:
    """Read a job's protocol card.

    Args:
        sweep_dir: the sweep folder.
        job: the job's folder, relative to it.

    Returns:
        The card of its summary.json (baseline.json of a baseline run), or None when it has none.
    """
    summary = Path(sweep_dir) / job / "summary.json"
    if not summary.is_file():
        summary = Path(sweep_dir) / job / "baseline.json"  # a classical baseline's run
    if not summary.is_file():
        return None
    return json.loads(summary.read_text()).get("protocol_card")


def check_one_protocol(jobs: pd.DataFrame, sweep_dir: Path, allow_mismatch: bool = False) -> str | None:
    """Make sure the finished jobs of a study share one protocol.

    Args:
        jobs: the table of `collect_jobs` (its PROTOCOL column).
        sweep_dir: the sweep folder.
        allow_mismatch: report a mismatch instead of stopping.

    Returns:
        None when every card agrees; with `allow_mismatch`, the note on the mismatch.

    Raises:
        ProtocolMismatch: If two jobs' protocols differ and `allow_mismatch` is False.
    """
    if PROTOCOL not in jobs.columns:
        return None
    first_of: dict[str, str] = {}
    for job, protocol in zip(jobs["job"], jobs[PROTOCOL], strict=True):
        if isinstance(protocol, str) and protocol:
            first_of.setdefault(protocol, job)
    if len(first_of) < 2:
        return None
    (hash_a, job_a), (hash_b, job_b) = list(first_of.items())[:2]
    fields = differing_fields(job_card(sweep_dir, job_a) or {}, job_card(sweep_dir, job_b) or {})
    note = (
        f"the jobs were measured under {len(first_of)} protocols ({', '.join(first_of)}): job {job_a} "
        f"({hash_a}) and job {job_b} ({hash_b}) differ in {', '.join(fields) or 'their cards'}"
    )
    if not allow_mismatch:
        raise ProtocolMismatch(
            f"{note}. Their scores are not comparable side by side; report each protocol's jobs apart, "
            "or pass --allow-protocol-mismatch to report them together anyway"
        )
    log.warning("%s; reported together as asked (--allow-protocol-mismatch)", note)
    return note
