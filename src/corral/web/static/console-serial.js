// The serial console: xterm.js on the instance's shared console (binary frames both ways).
// The terminal fits its box (xterm's fit addon); each new size goes to corrald as a text
// frame {"resize": [cols, rows]}, which sets the container's console pty to it (the
// answer {"resized": false}: a VM's serial line, which carries no window size).
import { Terminal } from "./vendor/xterm/xterm.mjs";
import { FitAddon } from "./vendor/xterm/addon-fit.mjs";
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
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(element);
  const fitted = () => {
    try { fit.fit(); } catch (e) { /* not laid out yet: keep the size */ }
    element.dataset.cols = String(term.cols);
    element.dataset.rows = String(term.rows);
  };
  fitted();
  const url = await openConsole(element, statusLine);
  if (!url) return;
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const encoder = new TextEncoder();
  const sendSize = () => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({resize: [term.cols, term.rows]}));
  };
  ws.onopen = () => {
    statusLine("connected"); element.dataset.connected = "true"; term.focus(); sendSize();
  };
  ws.onmessage = (message) => {
    if (typeof message.data === "string") {  // a control answer
      const said = JSON.parse(message.data);
      if ("resized" in said) {
        element.dataset.resized = String(said.resized);
        statusLine(said.resized ? `connected · ${term.cols}×${term.rows}`
          : `connected · ${term.cols}×${term.rows} here; a serial line carries no size: ` +
            `run "stty cols ${term.cols} rows ${term.rows}" in the guest`);
      }
      return;
    }
    term.write(new Uint8Array(message.data));
  };
  ws.onclose = (closing) => {
    element.dataset.connected = "false";
    statusLine("console closed" + (closing.reason ? ": " + closing.reason : "") + " (reload to reconnect)", closing.code !== 1000);
  };
  term.onData((data) => { if (ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(data)); });
  term.onBinary((data) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(Uint8Array.from(data, (c) => c.charCodeAt(0)));
  });
  term.onResize(() => sendSize());
  let pending = null;
  new ResizeObserver(() => {
    clearTimeout(pending);
    pending = setTimeout(fitted, 100);
  }).observe(element);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
