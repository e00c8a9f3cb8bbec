"""Where and how scoring runs: the device, and files decoded in worker threads, in order.

`Predictor` and `eval` resolve the `device` setting with `resolve_device`; `Predictor.predict_files`
decodes files ahead of scoring with `in_order`, which bounds how many decoded files are held.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ser_lightning.utils.errors import InvalidSetting

if TYPE_CHECKING:  # torch is imported where a device is resolved: the ONNX backend never does
    import torch

T = TypeVar("T")


def in_order(decode: Callable[[Path], T], paths: list[Path], workers: int) -> Iterator[T]:
    """`decode` of each path, in order, with at most `workers` running or done ahead of the caller.

    The bound is what keeps memory flat: a decoded file is only held until the caller takes it.
    One path (the latency case) is decoded here: starting a thread pool would cost more.

    Args:
        decode: what to do with each path, run in worker threads.
        paths: the paths, in the order their results are yielded.
        workers: the most decodes running or done ahead of the caller; 1 or less decodes in
            the caller's thread.

    Yields:
        `decode(path)` of each path, in the order of `paths`.
    """
    if workers <= 1 or len(paths) <= 1:
        yield from map(decode, paths)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        ahead: deque[Future] = deque()
        for path in paths:
            if len(ahead) == workers:
                yield ahead.popleft().result()
            ahead.append(pool.submit(decode, path))
        while ahead:
            yield ahead.popleft().result()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a device setting into a torch device.

    Args:
        device: `auto` (the GPU when there is one, else the CPU) or anything `torch.device`
            takes (cpu, cuda, cuda:1, mps).

    Returns:
        The device.

    Raises:
        InvalidSetting: when torch does not know the device, or it is a GPU and torch sees none.
    """
    import torch

    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise InvalidSetting(
            f"device={device!r} is not a torch device (auto, cpu, cuda, cuda:1, mps): {err}"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidSetting(
            f"device={device!r} asks for a GPU, but torch sees none here; use device=auto or cpu"
        )
    return resolved
