// The VNC display: noVNC on QEMU's VNC server, through corrald's websocket.
import RFB from "./vendor/novnc/core/rfb.js";
import { openConsole, statusLine } from "./console-common.js";

async function start() {
  const element = document.getElementById("console");
  if (!element) return;
  const url = await openConsole(element, statusLine);
  if (!url) return;
  const rfb = new RFB(element, url, {shared: true});
  rfb.scaleViewport = true;
  rfb.addEventListener("connect", () => { statusLine("connected"); element.dataset.connected = "true"; rfb.focus(); });
  rfb.addEventListener("disconnect", (e) => {
    element.dataset.connected = "false";
    statusLine(e.detail.clean ? "display closed (reload to reconnect)" : "the display connection failed (reload to retry)", !e.detail.clean);
  });
  rfb.addEventListener("securityfailure", (e) => statusLine("VNC security failure: " + e.detail.reason, true));
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
