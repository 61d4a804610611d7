// The serial console: xterm.js on the instance's shared console (binary frames both ways).
import { Terminal } from "./vendor/xterm/xterm.mjs";
import { openConsole, statusLine } from "./console-common.js";

async function start() {
  const element = document.getElementById("console");
  if (!element) return;
  const dark = document.documentElement.dataset.theme === "dark" ||
    (document.documentElement.dataset.theme !== "light" && matchMedia("(prefers-color-scheme: dark)").matches);
  const term = new Terminal({
    cols: 80, rows: 24, convertEol: false, cursorBlink: true, scrollback: 2000,
    fontFamily: "ui-monospace, 'DejaVu Sans Mono', monospace",
    theme: dark ? {background: "#0d1117", foreground: "#e6edf3"} : {background: "#ffffff", foreground: "#1f2328", cursor: "#1f2328"},
  });
  term.open(element);
  const url = await openConsole(element, statusLine);
  if (!url) return;
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const encoder = new TextEncoder();
  ws.onopen = () => { statusLine("connected"); element.dataset.connected = "true"; term.focus(); };
  ws.onmessage = (message) => {
    term.write(typeof message.data === "string" ? message.data : new Uint8Array(message.data));
  };
  ws.onclose = (closing) => {
    element.dataset.connected = "false";
    statusLine("console closed" + (closing.reason ? ": " + closing.reason : "") + " (reload to reconnect)", closing.code !== 1000);
  };
  term.onData((data) => { if (ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(data)); });
  term.onBinary((data) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(Uint8Array.from(data, (c) => c.charCodeAt(0)));
  });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
