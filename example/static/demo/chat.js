// The chat room page: pick a nickname, then one WebSocket to the room. No dependencies.
// Everything users typed goes into the page through textContent, never innerHTML.
"use strict";

const card = document.getElementById("chat-card");
const status = document.getElementById("chat-status");
const count = document.getElementById("chat-count");
const reconnect = document.getElementById("chat-reconnect");
const nickForm = document.getElementById("nick-form");
const nickInput = document.getElementById("nick-input");
const chatForm = document.getElementById("chat-form");
const chatInput = document.getElementById("chat-input");
const send = document.getElementById("chat-send");
const log = document.getElementById("chat-log");
const maxNick = Number(card.dataset.maxNick);

let socket = null;
let nick = null; // the nickname this tab said hello with

function wsUrl(path) {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
}

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}

// A stable colour per nickname, so a conversation is easy to follow.
function hue(name) {
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.codePointAt(0)) % 360;
  return hash;
}

// Append a line; keep the newest in view unless the reader scrolled up.
function append(item, always) {
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.append(item);
  if (always || atBottom) log.scrollTop = log.scrollHeight;
}

function time() {
  return new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function showMessage(from, text) {
  const item = document.createElement("li");
  item.className = from === nick ? "message mine" : "message";
  const name = span("nick", from);
  name.style.setProperty("--hue", hue(from));
  item.append(span("time", time()), name, span("text", text));
  append(item, from === nick);
}

function showNotice(text) {
  const item = document.createElement("li");
  item.className = "info";
  item.append(span("arrow", "•"), span("text", text));
  append(item, false);
}

function showCount(people) {
  count.textContent = people === 1 ? "1 person here" : people + " people here";
  count.hidden = false;
}

function setStatus(state, label) {
  status.dataset.state = state;
  status.textContent = label || state;
  send.disabled = state !== "open";
  reconnect.hidden = state !== "closed";
  if (state !== "open") count.hidden = true;
}

// Before joining, the nickname form; once joined, the message form.
function showForm(joined) {
  nickForm.hidden = joined;
  chatForm.hidden = !joined;
  (joined ? chatInput : nickInput).focus();
}

function hello() {
  socket.send(JSON.stringify({ type: "hello", nick: nick }));
  setStatus("open", "connected as " + nick);
  showForm(true);
}

function open() {
  setStatus("connecting");
  socket = new WebSocket(wsUrl(card.dataset.wsPath));
  socket.addEventListener("open", hello);
  socket.addEventListener("message", (event) => {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    if (data.type === "message") {
      showMessage(data.nick, data.text);
    } else if (data.type === "joined" || data.type === "left") {
      showNotice(data.nick + " " + data.type);
      showCount(data.count);
    } else if (data.type === "error") {
      showNotice(data.text);
      setStatus("open", "connected");
      send.disabled = true;
      showForm(false);
    }
  });
  socket.addEventListener("close", (event) => {
    setStatus("closed", "closed (" + event.code + ")");
    showNotice("Disconnected" + (event.reason ? ": " + event.reason : "") + ".");
  });
}

nickForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const wanted = nickInput.value.trim();
  if (wanted === "" || wanted.length > maxNick) return;
  nick = wanted;
  sessionStorage.setItem("chat-nick", nick);
  if (socket && socket.readyState === WebSocket.OPEN) hello();
  else open();
});

chatForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = chatInput.value.trim();
  if (!socket || socket.readyState !== WebSocket.OPEN || text === "") return;
  socket.send(JSON.stringify({ type: "say", text: text }));
  chatInput.value = "";
  chatInput.focus();
});

reconnect.addEventListener("click", open);

// One nickname per tab (sessionStorage), kept across reloads; a guest name to start with.
nickInput.value = sessionStorage.getItem("chat-nick") || "guest-" + (1000 + Math.floor(Math.random() * 9000));
nickInput.focus();
nickInput.select();
