"""The HTTP API's contract: the request and response bodies of every endpoint, as Pydantic models.

`/openapi.json` is generated from these models, so it alone is enough to generate a client,
and a client written in Python can validate the answers with the same models (see
docs/serving.md).

Adding a field to an answer (e.g. a model's dimensions, a conformal set) is one line here: an
optional field with a default of None and a description, e.g.
`dimensions: dict[str, float] | None = Field(None, description="...")`. Optional fields that are
None are left out of `/v1/predict`'s answers, so a model without them answers as before.
Answers are validated against these models before they are sent; a key the service produces
that no model declares is dropped, and `tests/test_api_contract.py` fails on it, so a new key
is declared here first.

Errors are RFC 9457 problem details (`application/problem+json`): `Problem`, and
`ValidationProblem` for a request that does not match the schema (422 with one entry per field).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PROBLEM_MEDIA_TYPE = "application/problem+json"
# Media types a recording may be sent with as the raw request body (besides multipart/form-data).
RAW_BODY_MEDIA_TYPES = ("application/octet-stream", "audio/*", "video/*")


class _Answer(BaseModel):
    """Base of the answers: keys the models do not declare are dropped, never sent."""

    model_config = ConfigDict(extra="ignore")


# --------------------------------------------------------------------------- requests
class PredictUpload(BaseModel):
    """The multipart form of POST /v1/predict: exactly one field, `file`, holding the recording's bytes."""

    model_config = ConfigDict(extra="forbid")

    file: bytes = Field(
        description="the recording (wav, flac, ogg, mp3, mp4, mkv, ...); its bytes, with or without a file name",
        json_schema_extra={"format": "binary"},
    )


# --------------------------------------------------------------------------- answers
class RatingScale(_Answer):
    """The rating scale of the training corpus that arousal, valence and dominance are given on."""

    low: float = Field(description="the scale's lowest rating (e.g. 1)")
    high: float = Field(description="its highest rating (e.g. 5 for IEMOCAP, 7 for MSP-Podcast)")


DIMENSIONS_DESCRIPTION = (
    "models with dimensions (task=dimensional or multitask): arousal, valence and dominance on the "
    "training corpus's rating scale (dimension_scale), the mean over the model windows (docs/dimensions.md)"
)
# what a task=dimensional model, which has no emotion classes, leaves out
NO_CLASSES = "; absent for a task=dimensional model (no emotion classes)"


class TimelineSegment(_Answer):
    """One speech segment of a recording's timeline."""

    start_s: float = Field(description="where the segment starts in the recording, in seconds")
    end_s: float = Field(description="where it ends, in seconds")
    emotion: str | None = Field(None, description="the most probable emotion of the segment" + NO_CLASSES)
    confidence: float | None = Field(
        None, ge=0.0, le=1.0, description="that emotion's probability" + NO_CLASSES
    )
    probabilities: dict[str, float] | None = Field(
        None, description="a probability per emotion, in the model's label order" + NO_CLASSES
    )
    dimensions: dict[str, float] | None = Field(None, description=DIMENSIONS_DESCRIPTION + "; unsmoothed")


class Prediction(_Answer):
    """The answer of POST /v1/predict: the emotion of one recording."""

    file: str = Field(description="the client's file name, made safe; 'upload' when none was given")
    emotion: str | None = Field(None, description="the most probable emotion" + NO_CLASSES)
    confidence: float | None = Field(
        None, ge=0.0, le=1.0, description="that emotion's probability" + NO_CLASSES
    )
    probabilities: dict[str, float] | None = Field(
        None, description="a probability per emotion, in the model's label order" + NO_CLASSES
    )
    duration_s: float = Field(ge=0.0, description="the recording's length in seconds")
    windows: int = Field(ge=1, description="model windows scored (their probabilities are averaged)")
    timeline: list[TimelineSegment] | None = Field(
        None, description="with ?timeline=true: the emotion of each speech segment, in order"
    )
    emotion_set: list[str] | None = Field(
        None,
        description="models trained with calibration=conformal: the conformal set of emotions, most probable "
        "first, that holds the true emotion for set_coverage of clips (docs/conformal.md)",
    )
    set_coverage: float | None = Field(
        None, gt=0.0, lt=1.0, description="the coverage emotion_set was fitted for, e.g. 0.9"
    )
    dimensions: dict[str, float] | None = Field(None, description=DIMENSIONS_DESCRIPTION)
    dimension_scale: RatingScale | None = Field(None, description="the scale of dimensions")


class TestMetrics(_Answer):
    """The test scores of the run that wrote the checkpoint."""

    __test__ = False  # a model of the API, not a pytest test class

    ua: float | None = Field(None, description="unweighted accuracy (mean recall over emotions)")
    wa: float | None = Field(None, description="weighted accuracy (plain accuracy)")
    f1: float | None = Field(None, description="macro F1")


class Protocol(_Answer):
    """How the training corpus was split."""

    split: str | None = Field(None, description="the split protocol (random, actor, kfold, ...)")
    sizes: dict[str, int] | None = Field(None, description="clips per part of the split")


class ModelInfo(_Answer):
    """The answer of GET /v1/model: what the served model is."""

    checkpoint: str = Field(description="the checkpoint's file name")
    labels: list[str] = Field(
        description="the emotions, in the order of the probabilities; empty for a task=dimensional model"
    )
    task: str | None = Field(
        None,
        description="what it predicts: categorical (emotions), dimensional (arousal, valence and dominance "
        "only), multitask (emotions and dimensions); null: not recorded (a baseline)",
    )
    dimensions: list[str] | None = Field(
        None, description="the dimensions each answer gives (arousal, valence, dominance); null: none"
    )
    dimension_scale: RatingScale | None = Field(None, description="the rating scale of the dimensions")
    sample_rate: int = Field(description="the rate recordings are resampled to, in Hz")
    window_s: float | None = Field(description="the model's window in seconds")
    features: dict[str, Any] = Field(description="the feature extractor: `name` and its settings")
    network: str | None = Field(description="the network's class")
    parameters: int = Field(ge=0, description="the model's parameter count")
    corpus: str | None = Field(None, description="the training corpus")
    protocol: Protocol = Field(default_factory=Protocol, description="the split of the training corpus")
    epoch: int | None = Field(None, description="the epoch the checkpoint was written at")
    global_step: int | None = Field(None, description="the training step it was written at")
    test_metrics: TestMetrics | None = Field(
        None, description="the run's test scores (from summary.json beside the run's checkpoints/)"
    )
    ser_lightning_version: str | None = Field(None, description="the version that trained it")
    backend: str | None = Field(
        None, description="what scores: torch, or onnxruntime fp32 | int8 (backend=onnx)"
    )
    model_card: dict[str, Any] | None = Field(
        None,
        description="the model card's facts, as an exported folder's README.md states them "
        "(reporting.model_card: corpus, protocol card hash, test scores with intervals, per-gender gap, "
        "calibration, INT8 agreement); a fact the run did not record is null",
    )


class BatchingCounts(_Answer):
    """The dynamic batcher's counts since start."""

    batches: int = Field(ge=0, description="model calls")
    requests: int = Field(ge=0, description="requests scored")
    windows: int = Field(ge=0, description="windows scored")
    mean_requests_per_batch: float = Field(ge=0.0, description="requests per model call")


class QueueCounts(_Answer):
    """The bounded queue of /v1/predict requests."""

    pending: int = Field(ge=0, description="requests being received, decoded or scored now")
    max_pending: int = Field(ge=1, description="the most at once (limits.max_pending_requests); more get 503")
    refused: int = Field(ge=0, description="requests refused with 503 since start because the queue was full")


class Health(_Answer):
    """The answer of GET /health."""

    status: str = Field(description="'ok' while the server runs")
    checkpoint: str | None = Field(description="the served checkpoint's file name")
    batching: BatchingCounts
    queue: QueueCounts


class StreamTicket(_Answer):
    """The answer of POST /v1/stream/tickets: a single-use ticket to open WS /v1/stream with."""

    ticket: str = Field(description="open ws://HOST/v1/stream?format=...&ticket=TICKET with it, once")
    expires_in_s: float = Field(gt=0.0, description="seconds it stays valid from now")


# --------------------------------------------------------------------------- errors
class Problem(BaseModel):
    """RFC 9457 problem details: the body of every 4xx and 5xx answer (`application/problem+json`)."""

    type: str = Field(
        "about:blank", description="a URI naming the problem type; about:blank: the status says it"
    )
    title: str = Field(description="the HTTP status phrase, e.g. 'Unprocessable Content'")
    status: int = Field(ge=400, le=599, description="the HTTP status code")
    detail: str = Field(description="what is wrong with this request and how to fix it")
    instance: str = Field(description="the request's path")


class FieldError(BaseModel):
    """One way a request does not match the schema."""

    location: list[str | int] = Field(description="where: e.g. ['query', 'timeline'] or ['body', 'file']")
    detail: str = Field(description="what is wrong there")
    type: str = Field(
        description="a short code of the error, e.g. 'bool_parsing', 'missing', 'extra_forbidden'"
    )


class ValidationProblem(Problem):
    """A 422 for a request that does not match the schema: the problem, with an entry per field."""

    errors: list[FieldError] = Field(description="each field that does not match, with what is wrong")


PROBLEM_MODELS = (Problem, FieldError, ValidationProblem)
