// A console page's websocket: a one-use ticket (CSRF-checked POST), then the socket.
export async function openConsole(element, onStatus) {
  const answer = await fetch(element.dataset.ticket, {
    method: "POST", credentials: "same-origin",
    headers: {"X-CSRF-Token": element.dataset.csrf},
  });
  if (!answer.ok) {
    let message = answer.status + " " + answer.statusText;
    try {
      const text = await answer.text();
      const found = new DOMParser().parseFromString(text, "text/html").querySelector("#error-message");
      if (found) message = found.textContent.trim();
    } catch (e) { /* keep the status line */ }
    onStatus("cannot open the console: " + message, true);
    return null;
  }
  const granted = await answer.json();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return scheme + "//" + location.host + granted.url + "?ticket=" + encodeURIComponent(granted.ticket);
}

export function statusLine(text, bad) {
  const line = document.getElementById("console-status");
  if (!line) return;
  line.textContent = text;
  line.classList.toggle("error", !!bad);
  line.classList.toggle("muted", !bad);
}
