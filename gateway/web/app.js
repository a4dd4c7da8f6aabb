// The web chat: one websocket to /v1/realtime, nothing else. Typed text, pictures, camera frames and
// microphone audio go up as Realtime client events; replies and transcripts come down as they stream,
// and with "speak replies" the reply's audio plays as it arrives (cut short when you speak over it).

import { Player } from "./player.js";

const $ = (id) => document.getElementById(id);
const log = $("log");
const partial = $("partial");
const errorBox = $("error");
const status = $("status");
const stop = $("stop");

const KEY_STORE = "mmstream-api-key"; // this tab only
const RATE = 24000; // PCM16 mono at 24 kHz: the Realtime API's default input format
let ws;
let replies = new Map(); // response id -> its bubble
let spoken = new Map(); // item id -> the bubble of speech being transcribed
let mic = null; // {context, stream}
let camera = null; // {stream, timer}
const player = new Player(RATE);

function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/realtime`;
  // A browser cannot set headers on a websocket: the API key rides in a subprotocol, as with OpenAI.
  const key = sessionStorage.getItem(KEY_STORE);
  ws = new WebSocket(url, key ? ["realtime", `openai-insecure-api-key.${key}`] : ["realtime"]);
  let opened = false;
  ws.onopen = () => {
    opened = true;
    status.textContent = "connected";
    configure();
  };
  ws.onclose = () => {
    if (!opened) {
      const entered = prompt(key ? "That API key was refused. API key:" : "This server needs an API key:");
      if (entered) {
        sessionStorage.setItem(KEY_STORE, entered.trim());
        connect();
        return;
      }
    }
    status.textContent = "disconnected";
    showError("The connection to the server closed. Reload the page to reconnect.");
    stopMic();
    stopCamera();
  };
  ws.onmessage = (message) => handle(JSON.parse(message.data));
}

function send(event) {
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    showError("Not connected to the server.");
    return false;
  }
  ws.send(JSON.stringify(event));
  return true;
}

function configure() {
  const vad = $("vad").value; // "server_vad", "semantic_vad", or "" (the person commits)
  const session = {
    type: "realtime",
    output_modalities: [$("voice").checked ? "audio" : "text"],
    audio: {
      input: { format: { type: "audio/pcm", rate: RATE }, turn_detection: vad ? { type: vad } : null },
      output: { format: { type: "audio/pcm", rate: RATE } },
    },
  };
  // Optional settings from the address: /?temperature=0&instructions=...&fusion=text
  const params = new URLSearchParams(location.search);
  if (params.has("temperature")) session.temperature = Number(params.get("temperature"));
  for (const key of ["instructions", "fusion"]) if (params.has(key)) session[key] = params.get(key);
  send({ type: "session.update", session });
  $("commit").hidden = vad || !mic;
}

// --- what the server says --------------------------------------------------------------------------

function handle(event) {
  switch (event.type) {
    case "response.created":
      replies.set(event.response.id, bubble("assistant", ""));
      stop.disabled = false;
      break;
    case "response.output_audio.delta":
      player.play(event.item_id, event.delta);
      break;
    case "response.output_text.delta":
    case "response.output_audio_transcript.delta": {
      const li = replies.get(event.response_id) || bubble("assistant", "");
      replies.set(event.response_id, li);
      li.textContent += event.delta;
      scrollDown();
      break;
    }
    case "response.done": {
      stop.disabled = true;
      const r = event.response;
      const li = replies.get(r.id);
      if (r.status !== "completed" && li) {
        const why = r.status_details?.error?.message || r.status_details?.reason || "";
        li.dataset.status = r.status;
        li.append(` [${r.status}${why ? `: ${why}` : ""}]`);
      }
      replies.delete(r.id);
      break;
    }
    case "input_audio_buffer.speech_started":
      partial.textContent = "listening…";
      silence(); // the server cancels the reply; what was heard of it is what stays in the conversation
      break;
    case "input_audio_buffer.speech_stopped":
      partial.textContent = "";
      break;
    case "input_audio_buffer.committed":
      speechBubble(event.item_id); // before the reply's bubble, whichever event comes first
      break;
    case "conversation.item.input_audio_transcription.delta": {
      const li = speechBubble(event.item_id);
      li.textContent += event.delta; // the partial transcript, live
      break;
    }
    case "conversation.item.input_audio_transcription.completed":
      speechBubble(event.item_id).textContent = event.transcript || "(nothing heard)";
      spoken.delete(event.item_id);
      break;
    case "conversation.item.input_audio_transcription.failed":
      speechBubble(event.item_id).textContent = "(not understood)";
      spoken.delete(event.item_id);
      showError(`Speech could not be transcribed: ${event.error?.message || "unknown error"}`);
      break;
    case "error":
      showError(event.error?.message || "The server reported an error.");
      break;
  }
}

// --- what the person does --------------------------------------------------------------------------

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  clearError();
  if (ask([{ type: "input_text", text }])) {
    bubble("user", text);
    $("text").value = "";
  }
});

$("picture").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  e.target.value = "";
  if (!file) return;
  clearError();
  const url = await readAsDataUrl(file);
  const text = $("text").value.trim();
  const content = [{ type: "input_image", image_url: url }];
  if (text) content.push({ type: "input_text", text });
  if (ask(content)) {
    const li = bubble("user", text);
    const img = document.createElement("img");
    img.src = url;
    img.alt = file.name;
    li.prepend(img);
    $("text").value = "";
  }
});

function ask(content) {
  const item = { type: "message", role: "user", content };
  return send({ type: "conversation.item.create", item }) && send({ type: "response.create" });
}

stop.addEventListener("click", () => {
  send({ type: "response.cancel" });
  silence();
});
$("vad").addEventListener("change", configure);
$("voice").addEventListener("change", () => {
  configure();
  if ($("voice").checked) player.unlock().catch((err) => showError(`Audio cannot play here: ${err.message}`));
});

function silence() {
  const cut = player.stop();
  if (cut) send({ type: "conversation.item.truncate", item_id: cut.item, content_index: 0, audio_end_ms: cut.ms });
}
$("commit").addEventListener("click", () => {
  send({ type: "input_audio_buffer.commit" });
  send({ type: "response.create" });
});

$("mic").addEventListener("click", async () => {
  if (mic) return stopMic();
  clearError();
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
    const context = new AudioContext({ sampleRate: RATE });
    await context.audioWorklet.addModule("/static/pcm-worklet.js");
    const source = context.createMediaStreamSource(stream);
    const writer = new AudioWorkletNode(context, "pcm-writer");
    writer.port.onmessage = (m) => send({ type: "input_audio_buffer.append", audio: base64(m.data) });
    source.connect(writer).connect(context.destination); // the writer outputs silence; the graph must reach the output to run
    mic = { context, stream };
    $("mic").textContent = "Stop microphone";
    $("mic").setAttribute("aria-pressed", "true");
    configure();
  } catch (err) {
    showError(`The microphone could not be started: ${err.message}`);
  }
});

function stopMic() {
  if (!mic) return;
  mic.stream.getTracks().forEach((t) => t.stop());
  mic.context.close();
  mic = null;
  $("mic").textContent = "Start microphone";
  $("mic").setAttribute("aria-pressed", "false");
  $("commit").hidden = true;
}

$("camera").addEventListener("click", async () => {
  if (camera) return stopCamera();
  clearError();
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640 } });
    const video = $("preview");
    video.srcObject = stream;
    video.hidden = false;
    await video.play();
    const every = 1000 / Number($("rate").value);
    camera = { stream, timer: setInterval(() => sendFrame(video), every) };
    $("camera").textContent = "Stop camera";
    $("camera").setAttribute("aria-pressed", "true");
    note("Camera on: ask about what it sees.");
  } catch (err) {
    showError(`The camera could not be started: ${err.message}`);
  }
});

function sendFrame(video) {
  // A frame is a message holding one picture; the server drops frames that show what the last one did.
  const canvas = document.createElement("canvas");
  const scale = Math.min(1, 512 / video.videoWidth);
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  const item = { type: "message", role: "user", content: [{ type: "input_image", image_url: canvas.toDataURL("image/jpeg", 0.8) }] };
  send({ type: "conversation.item.create", item });
}

function stopCamera() {
  if (!camera) return;
  clearInterval(camera.timer);
  camera.stream.getTracks().forEach((t) => t.stop());
  camera = null;
  $("preview").hidden = true;
  $("camera").textContent = "Start camera";
  $("camera").setAttribute("aria-pressed", "false");
}

// --- small helpers ---------------------------------------------------------------------------------

function bubble(role, text) {
  const li = document.createElement("li");
  li.className = role;
  li.textContent = text;
  log.append(li);
  scrollDown();
  return li;
}

function speechBubble(itemId) {
  if (!spoken.has(itemId)) {
    const li = bubble("user", "");
    li.classList.add("spoken");
    spoken.set(itemId, li);
  }
  return spoken.get(itemId);
}

function note(text) {
  bubble("note", text);
}

function scrollDown() {
  log.parentElement.scrollTop = log.parentElement.scrollHeight;
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = false;
}

function clearError() {
  errorBox.hidden = true;
  errorBox.textContent = "";
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

connect();
