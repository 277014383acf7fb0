// The demo page: one WebSocket per card, opened on load. No dependencies.
"use strict";

function wsUrl(path) {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
}

function logLine(log, kind, text) {
  const item = document.createElement("li");
  item.className = kind;
  const arrow = document.createElement("span");
  arrow.className = "arrow";
  arrow.textContent = { sent: "→", received: "←", info: "•" }[kind];
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  item.append(arrow, body);
  log.append(item);
  log.scrollTop = log.scrollHeight;
}

// Wire a card: its status badge, its form, its log and its reconnect button.
function connectCard(prefix) {
  const card = document.getElementById(prefix + "-card");
  const status = document.getElementById(prefix + "-status");
  const form = document.getElementById(prefix + "-form");
  const input = document.getElementById(prefix + "-input");
  const send = document.getElementById(prefix + "-send");
  const log = document.getElementById(prefix + "-log");
  const reconnect = document.getElementById(prefix + "-reconnect");
  let socket = null;

  function setStatus(state, label) {
    status.dataset.state = state;
    status.textContent = label || state;
    send.disabled = state !== "open";
    reconnect.hidden = state !== "closed";
  }

  function open() {
    setStatus("connecting");
    socket = new WebSocket(wsUrl(card.dataset.wsPath));
    socket.addEventListener("open", () => setStatus("open"));
    socket.addEventListener("message", (event) => logLine(log, "received", event.data));
    socket.addEventListener("close", (event) => {
      setStatus("closed", "closed (" + event.code + ")");
      logLine(log, "info", "closed with code " + event.code + (event.reason ? ": " + event.reason : ""));
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!socket || socket.readyState !== WebSocket.OPEN || input.value === "") return;
    socket.send(input.value);
    logLine(log, "sent", input.value);
    input.value = "";
    input.focus();
  });
  reconnect.addEventListener("click", open);
  open();
}

// The plain-HTTP form works without JavaScript; with it, the answer shows in place.
function wireHttpForm() {
  const form = document.getElementById("lower-http-form");
  const input = document.getElementById("lower-http-input");
  const result = document.getElementById("lower-http-result");
  const link = document.getElementById("lower-http-link");
  const output = document.getElementById("lower-http-output");

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const url = form.getAttribute("action") + "?" + new URLSearchParams({ message: input.value });
    link.href = url;
    link.textContent = "GET " + url;
    try {
      const response = await fetch(url);
      const text = await response.text();
      output.textContent = response.ok ? text : response.status + " " + response.statusText;
    } catch (error) {
      output.textContent = String(error);
    }
    result.hidden = false;
  });
}

connectCard("echo");
connectCard("lower");
wireHttpForm();
