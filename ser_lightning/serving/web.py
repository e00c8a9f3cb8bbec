"""The web page at `/`: a Gradio app mounted in the same ASGI application as the API.

Upload a file or record from the microphone (Gradio's audio component, which also draws the
waveform); the page shows the predicted emotion with a bar per emotion, the waveform, and for
recordings longer than a few model windows (or when asked) the emotion timeline: a plot and a
table of the speech segments; a model's arousal, valence and dominance and the recording on the
valence-arousal plane (task=multitask beside the emotion, task=dimensional instead of it). It scores through the same service as POST /v1/predict, so the
page and the API give the same answer for the same file.

The page's functions accept only files uploaded through the page: Gradio checks that a file a
client names lies in its upload folder, but skips the check for an app mounted into another
(it was never "launched"), so `mount_page` marks the page launched. Errors shown on the page are
the service's own messages (`show_error=False` hides the text of any other exception), which
name no server path. A failed page upload leaves no partial file behind (`_CleanMultiPartParser`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

# Set before Gradio is imported: the page must not call home (usage statistics) from a server.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from ser_lightning.serving.service import EmotionService, RequestError  # noqa: E402

if TYPE_CHECKING:  # annotations only: Gradio is imported where the page is built
    import gradio as gr
    from fastapi import FastAPI

PAGE_USER = "ser"
# Gradio keeps uploads and recordings in its cache folder: files older than this are deleted,
# checked as often.
CACHE_SECONDS = 600


def _model_text(info: dict) -> str:
    metrics = info.get("test_metrics") or {}
    scores = ", ".join(f"{k.upper()} {v:.3f}" for k, v in metrics.items())
    protocol = (info.get("protocol") or {}).get("split")
    return (
        f"**Model** `{info.get('checkpoint')}`: {info.get('network')} on {info['features'].get('name')} "
        f"features, {info.get('parameters', 0):,} parameters; trained on {info.get('corpus') or 'an unrecorded corpus'}"
        + (f" ({protocol} split)" if protocol else "")
        + (f"; test {scores}" if scores else "")
        + (
            f". Emotions: {', '.join(info['labels'])}."
            if info["labels"]
            else ". Arousal, valence and dominance (no emotion classes)."
        )
    )


def segments_table(segments: list[dict]) -> str:
    """The speech segments as a Markdown table: times, emotion and confidence, arousal and valence.

    Args:
        segments: the timeline's records (`Timeline.records`); the emotion columns for a model with
            classes, the arousal and valence columns for one with dimensions.

    Returns:
        The table, or "" without segments.
    """
    if not segments:
        return ""
    classes = all("emotion" in s for s in segments)
    rated = all("dimensions" in s for s in segments)
    columns = (
        ["start (s)", "end (s)"]
        + (["emotion", "confidence"] if classes else [])
        + (["arousal", "valence"] if rated else [])
    )
    aligns = ["---:", "---:"] + ([":---", "---:"] if classes else []) + (["---:", "---:"] if rated else [])
    rows = []
    for s in segments:
        cells = [f"{s['start_s']:.2f}", f"{s['end_s']:.2f}"]
        if classes:
            cells += [s["emotion"], f"{100 * s['confidence']:.1f}%"]
        if rated:
            cells += [f"{s['dimensions']['arousal']:.2f}", f"{s['dimensions']['valence']:.2f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(["| " + " | ".join(columns) + " |", "|" + "|".join(aligns) + "|", *rows])


def build_page(service: EmotionService) -> gr.Blocks:
    """Build the web page: a recording in, its emotion, summary, timeline plot and segments out.

    Args:
        service: the service that scores the recordings.

    Returns:
        The Gradio Blocks of the page.
    """
    import gradio as gr
    import matplotlib.pyplot as plt

    from ser_lightning.inference.timeline import timeline_figure

    rate = service.predictor.audio.sample_rate
    long_seconds = service.long_recording_s  # whole-clip models have no window length

    async def analyse(path: str | None, always_timeline: bool):
        if not path:
            raise gr.Error("Upload a recording or record one with the microphone first.")
        try:
            result, decoded = await service.analyse_path(
                path, timeline=True if always_timeline else "auto", keep_wave=True
            )
        except RequestError as err:
            raise gr.Error(err.message) from None
        figure = timeline_figure(decoded.timeline, decoded.wave, rate)
        plt.close(figure)  # gradio draws it; pyplot must not keep it
        summary = (
            f"{result['duration_s']:.2f} s, {result['windows']} window{'s' if result['windows'] != 1 else ''}"
        )
        if "emotion" in result:  # a model with classes
            summary = f"**{result['emotion']}** ({100 * result['confidence']:.1f}%), " + summary
        plane = None
        if result.get("dimensions"):  # a model with dimensions: them, and their plane
            from ser_lightning.inference.dimension_plane import valence_arousal_figure
            from ser_lightning.inference.output import dimension_text

            summary += f"; {dimension_text(result['dimensions'], result['dimension_scale'])}"
            plane = valence_arousal_figure(
                result["dimensions"], result["dimension_scale"], result.get("timeline")
            )
            plt.close(plane)
        if result.get("emotion_set"):
            summary += (
                f"; set of {100 * result['set_coverage']:.0f}% coverage: {', '.join(result['emotion_set'])}"
            )
        return result.get("probabilities"), summary, figure, segments_table(result.get("timeline", [])), plane

    with gr.Blocks(title="Speech emotion recognition", delete_cache=(CACHE_SECONDS, CACHE_SECONDS)) as page:
        gr.Markdown(
            "# Speech emotion recognition\n"
            + _model_text(service.info)
            + "\n\n[Live microphone](live): the emotion as you speak, segment by segment."
        )
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(
                    sources=["upload", "microphone"],
                    type="filepath",
                    label="Recording (upload a file or record)",
                    elem_id="recording",
                )
                always_timeline = gr.Checkbox(
                    value=False,
                    label=f"Timeline for every recording (always shown for recordings over {long_seconds:g} s)",
                )
                button = gr.Button("Predict", variant="primary", elem_id="predict")
            with gr.Column():
                emotion = gr.Label(
                    num_top_classes=max(1, len(service.labels)),
                    label="Predicted emotion",
                    elem_id="emotion",
                    visible=bool(service.labels),  # a task=dimensional model has no emotion
                )
                summary = gr.Markdown(elem_id="summary")
                plane = gr.Plot(
                    label="Valence and arousal",
                    elem_id="valence-arousal",
                    visible=service.dimension_scale is not None,
                )
        plot = gr.Plot(label="Waveform and emotion timeline", elem_id="timeline-plot")
        segments = gr.Markdown(label="Speech segments", elem_id="segments")
        outputs = [emotion, summary, plot, segments, plane]
        button.click(analyse, [audio, always_timeline], outputs, api_name=False)
        audio.upload(analyse, [audio, always_timeline], outputs, api_name=False)
        audio.stop_recording(analyse, [audio, always_timeline], outputs, api_name=False)
    return page


def _remove_partial_uploads_on_any_error() -> None:
    """Make Gradio's upload parser delete its temporary files whatever ends an upload early.

    It deletes them on its own size and form errors only; a body cut off by the server's size
    limit or a stall (`guards.BodyGuard`), a client that disconnects, or a malformed multipart
    body would leave up to max_upload_mb in the temporary folder per request. A malformed body
    is answered 400 (Gradio's answer to its own form errors), not 500.
    """
    from gradio import route_utils
    from python_multipart.exceptions import MultipartParseError

    parser = route_utils.GradioMultiPartParser
    if getattr(parser, "removes_partial_uploads", False):
        return

    class CleanMultiPartParser(parser):
        removes_partial_uploads = True

        async def parse(self):
            try:
                return await super().parse()
            except BaseException as err:
                for handle in self._files_to_close_on_error:
                    handle.close()
                    Path(handle.name).unlink(missing_ok=True)
                if isinstance(err, MultipartParseError):
                    raise route_utils.MultiPartException(f"malformed multipart body: {err}") from None
                raise

    route_utils.GradioMultiPartParser = CleanMultiPartParser


def mount_page(app: FastAPI, service: EmotionService, api_key: str | None) -> None:
    """Mount the page at `/`, behind the API key (as the password of user `ser`) when one is set."""
    import gradio as gr

    # Gradio's cache of uploads and recordings: a folder of this server's own, removed at exit
    # (besides Gradio deleting old files in it while the server runs).
    cache = Path(tempfile.mkdtemp(prefix="ser-page-", dir=service.settings.upload_dir))
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    page = build_page(service)
    gr.mount_gradio_app(
        app,
        page,
        path="/",
        auth=(PAGE_USER, api_key) if api_key else None,
        max_file_size=service.settings.max_upload_bytes,
        footer_links=[],
        show_error=False,
    )
    # Gradio checks the files a client names against its upload folder only in a launched app;
    # a mounted one never launches, and would copy any file the server can read into its cache.
    page.has_launched = True
    _remove_partial_uploads_on_any_error()
    app.state.page_cache = cache
    if api_key:  # the live page asks for stream tickets with the login session of this page
        from starlette.routing import Mount

        mounted = next(r.app for r in reversed(app.routes) if isinstance(r, Mount) and r.path == "")
        app.state.page_session = _login_session(mounted)


def _login_session(gradio_app):
    """Make the check of the page's login session: Gradio's own (`/user`), on any request's headers.

    Gradio's login (user `ser`, the key as password) sets a random token as a cookie named after
    the app (`access-token-<id>`, and `access-token-unsecure-<id>` for plain http) and keeps the
    tokens it gave; a request carries a session when either cookie holds one of them.

    Returns:
        A function of a request's headers: whether they carry a session.
    """
    from starlette.requests import cookie_parser

    names = (f"access-token-{gradio_app.cookie_id}", f"access-token-unsecure-{gradio_app.cookie_id}")

    def logged_in(headers) -> bool:
        cookies = cookie_parser(headers.get("cookie", ""))
        return any(gradio_app.tokens.get(cookies.get(name)) is not None for name in names)

    return logged_in
