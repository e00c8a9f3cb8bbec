"""`python -m ser_lightning.export` hides torch.onnx's "torchvision is not installed" warnings (a
dozen per export, from the exporter's operator registry) and nothing else that logger says."""

from __future__ import annotations

import logging

import pytest

from ser_lightning.utils.config import TORCHVISION_NOTICE_LOGGER, silence_torchvision_notice


@pytest.fixture
def registry_logger():
    """The exporter registry's logger, with the filters it had put back afterwards."""
    logger = logging.getLogger(TORCHVISION_NOTICE_LOGGER)
    before = list(logger.filters)
    for installed in before:
        logger.removeFilter(installed)
    yield logger
    logger.filters[:] = before


def notices(records) -> list[str]:
    return [r.getMessage() for r in records if r.getMessage().startswith("torchvision is not installed")]


def test_the_torchvision_notices_of_the_exporters_registry_are_hidden_and_nothing_else(
    registry_logger, caplog
):
    import importlib.util

    from torch.onnx._internal.exporter._registration import ONNXRegistry

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here: the registry has nothing to warn about")
    with caplog.at_level(logging.WARNING):
        ONNXRegistry.from_torchlib()  # what every torch.onnx.export(dynamo=True) builds
    said = notices(caplog.records)
    assert said and all(n.startswith("torchvision is not installed. Skipping torchvision::") for n in said)
    caplog.clear()
    silence_torchvision_notice()
    silence_torchvision_notice()  # once is enough, twice adds nothing
    assert len(registry_logger.filters) == 1
    with caplog.at_level(logging.WARNING):
        ONNXRegistry.from_torchlib()
        registry_logger.warning("an operator could not be registered: %s", "aten::foo")
        logging.getLogger("torch.onnx").warning("torchvision is not installed. Skipping %s", "x::y")
    assert [r.getMessage() for r in caplog.records] == [
        "an operator could not be registered: aten::foo",  # the same logger's other warnings pass
        "torchvision is not installed. Skipping x::y",  # the same words from another logger too
    ]
