"""The live-microphone page at `/live`: the emotion of speech as it is spoken, over WS /v1/stream.

A small page of its own (plain HTML and JavaScript, no Gradio), linked from the main page: the
browser records the microphone through an `AudioContext` at 16 kHz (the browser resamples), and
sends each 2048-sample block as a binary frame of little-endian float32 (`format=f32le`), the
echo cancelling, noise suppression and gain control of the browser turned off. The blocks are
gathered by an AudioWorklet on the browser's audio thread, so a busy page delays them but drops
none (the deprecated ScriptProcessor runs on the page's main thread and loses blocks when the
page is busy). The page shows
the emotion of the segment still open (partial events, in grey) and lists each finished segment
with its time, emotion and confidence (a model with dimensions adds its arousal and valence; a
task=dimensional model shows those instead of an emotion). The page opens the stream on its own origin, which the
server accepts (pages of other origins are refused), with a single-use ticket it asks
POST /v1/stream/tickets for right before (a browser's WebSocket cannot send the API key; on a
server with one, the page's login session gets the ticket: `serving.stream_tickets`).
"""

from __future__ import annotations

import html

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Live speech emotion</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
 #now { font-size: 2.5rem; font-weight: 600; margin: 1rem 0; min-height: 3rem; }
 #now.partial { color: #888; }
 #segments li { margin: .2rem 0; }
 #status { color: #555; }
 button { font-size: 1rem; padding: .4rem 1rem; }
</style></head>
<body>
<h1>Live speech emotion</h1>
<p>Emotions: __LABELS__. Speak: the emotion of the speech you are saying is shown as you speak
(grey), and each stretch of speech gets its final emotion when you pause.
<a href="./">Upload a recording instead</a>.</p>
<p><button id="start">Start microphone</button> <button id="stop" disabled>Stop</button></p>
<div id="status">Press start and allow the microphone.</div>
<div id="now"></div>
<ol id="segments"></ol>
<script>
"use strict";
let socket = null, context = null, source = null, processor = null, microphone = null;
const $ = (id) => document.getElementById(id);
// from origin and path, never location.href: a URL with user:password@ in it is refused by fetch
const here = () => location.origin + location.pathname;
function streamUrl(ticket) {
  const url = new URL("v1/stream", here());
  url.search = new URLSearchParams({ format: "f32le", ticket: ticket }).toString();
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}
async function streamTicket() {
  // single use, valid for seconds: one per stream, asked for with the page's own login session
  const answer = await fetch(new URL("v1/stream/tickets", here()), { method: "POST", credentials: "same-origin" });
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) { throw new Error(body.detail || "HTTP " + answer.status); }
  return body.ticket;
}
// the event's answer: its emotion and confidence, and a model's arousal and valence (a
// task=dimensional model has those only)
// runs on the browser's audio thread: gathers the 128-sample render quanta into blocks of 2048
// and hands each block's buffer to the page, which sends it; a busy page delays blocks, never drops them
const BLOCK_SENDER = `
class BlockSender extends AudioWorkletProcessor {
  constructor() { super(); this.block = new Float32Array(2048); this.filled = 0; }
  process(inputs) {
    const samples = inputs[0] && inputs[0][0];
    for (let at = 0; samples && at < samples.length; ) {
      const n = Math.min(samples.length - at, this.block.length - this.filled);
      this.block.set(samples.subarray(at, at + n), this.filled);
      this.filled += n; at += n;
      if (this.filled === this.block.length) {
        this.port.postMessage(this.block.buffer, [this.block.buffer]);
        this.block = new Float32Array(2048); this.filled = 0;
      }
    }
    return true;
  }
}
registerProcessor("block-sender", BlockSender);
`;
function said(event) {
  const parts = [];
  if (event.emotion !== undefined) { parts.push(event.emotion + " (" + (100 * event.confidence).toFixed(0) + "%)"); }
  if (event.dimensions) {
    parts.push("arousal " + event.dimensions.arousal.toFixed(2) + ", valence " + event.dimensions.valence.toFixed(2));
  }
  return parts.join("; ");
}
function show(event) {
  if (event.type === "ready") { $("status").textContent = "Listening: speak now."; }
  else if (event.type === "partial") { $("now").textContent = said(event); $("now").className = "partial"; }
  else if (event.type === "segment") {
    $("now").textContent = said(event); $("now").className = "";
    const item = document.createElement("li");
    item.className = "segment"; item.dataset.emotion = event.emotion || ""; item.dataset.start = event.start_s;
    item.textContent = event.start_s.toFixed(2) + "-" + event.end_s.toFixed(2) + " s: " + said(event)
      + (event.forced ? ", cut while speaking" : "");
    $("segments").append(item);
  }
  else if (event.type === "end") { $("status").textContent = "Stopped: " + event.segments + " segments."; }
  else if (event.type === "error") { $("status").textContent = "The server closed the stream: " + event.detail; }
}
function release() {
  if (processor) { processor.disconnect(); processor = null; }
  if (source) { source.disconnect(); source = null; }
  if (microphone) { microphone.getTracks().forEach((t) => t.stop()); microphone = null; }
  if (context) { context.close(); context = null; }
  $("start").disabled = false; $("stop").disabled = true;
}
async function start() {
  $("start").disabled = true;
  try {
    microphone = await navigator.mediaDevices.getUserMedia({ audio: {
      channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  } catch (err) {
    $("status").textContent = "No microphone: " + err.message; $("start").disabled = false; return;
  }
  let ticket;
  try {
    ticket = await streamTicket();
  } catch (err) {
    $("status").textContent = "The server refused the stream: " + err.message; release(); return;
  }
  context = new AudioContext({ sampleRate: 16000 });
  socket = new WebSocket(streamUrl(ticket));
  socket.binaryType = "arraybuffer";
  socket.onmessage = (message) => show(JSON.parse(message.data));
  socket.onclose = (closed) => {
    if (closed.code !== 1000 && !$("status").textContent.startsWith("The server")) {
      $("status").textContent = "The stream closed (code " + closed.code + ").";
    }
    release();
  };
  socket.onopen = async () => {
    source = context.createMediaStreamSource(microphone);
    const module = URL.createObjectURL(new Blob([BLOCK_SENDER], { type: "text/javascript" }));
    try {
      await context.audioWorklet.addModule(module);
    } finally {
      URL.revokeObjectURL(module);
    }
    if (!context) { return; }  // stopped while the worklet loaded
    processor = new AudioWorkletNode(context, "block-sender");
    processor.port.onmessage = (message) => {
      if (socket && socket.readyState === WebSocket.OPEN) { socket.send(message.data); }
    };
    source.connect(processor); processor.connect(context.destination);
    $("stop").disabled = false;
  };
}
function stop() {
  if (processor) { processor.port.onmessage = null; }
  if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify({ type: "end" })); }
  $("stop").disabled = true;
}
$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
</script>
</body></html>
"""


def live_page(labels: list[str]) -> str:
    """Make the live-microphone page for a model with these emotions.

    Args:
        labels: the model's emotions, listed on the page (none for a task=dimensional model).

    Returns:
        The page's HTML.
    """
    listed = ", ".join(labels) if labels else "none (this model gives arousal, valence and dominance)"
    return PAGE.replace("__LABELS__", html.escape(listed))
