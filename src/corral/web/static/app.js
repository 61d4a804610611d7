/* Corral console: colour theme, and the live events stream (/ui/events) that refreshes
   the parts of a page marked hx-trigger="corral:event from:body". No eval, no inline code
   (the pages' Content-Security-Policy allows scripts from /ui/static only). */
(function () {
  "use strict";
  var KEY = "corral-theme";
  var THEMES = ["auto", "light", "dark"];
  function stored() {
    try { return localStorage.getItem(KEY) || "auto"; } catch (e) { return "auto"; }
  }
  function apply(theme) {
    document.documentElement.setAttribute("data-theme", theme);
    var label = document.getElementById("theme-name");
    if (label) { label.textContent = theme; }
  }
  apply(stored());

  function connect(url) {
    var status = document.getElementById("live-status");
    var list = document.getElementById("events");
    var delay = 1000;
    function open() {
      var scheme = location.protocol === "https:" ? "wss://" : "ws://";
      var ws = new WebSocket(scheme + location.host + url);
      ws.onopen = function () {
        delay = 1000;
        document.body.setAttribute("data-live-state", "open");
        if (status) { status.textContent = "live"; }
      };
      ws.onmessage = function (message) {
        var event;
        try { event = JSON.parse(message.data); } catch (e) { return; }
        document.body.dispatchEvent(new CustomEvent("corral:event", { detail: event }));
        if (list) {
          var item = document.createElement("li");
          var time = document.createElement("span");
          time.className = "muted";
          time.textContent = (event.time || "").slice(11, 19) + " ";
          var type = document.createElement("strong");
          type.textContent = event.type;
          item.appendChild(time);
          item.appendChild(type);
          if (event.instance) { item.appendChild(document.createTextNode(" " + event.instance)); }
          list.insertBefore(item, list.firstChild);
          while (list.children.length > 50) { list.removeChild(list.lastChild); }
        }
      };
      ws.onclose = function (closing) {
        document.body.setAttribute("data-live-state", "closed");
        if (status) { status.textContent = "reconnecting…"; }
        if (closing.code === 4401 || closing.code === 4403) {
          if (status) { status.textContent = "not available"; }
          return;
        }
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 30000);
      };
    }
    open();
  }

  document.addEventListener("DOMContentLoaded", function () {
    apply(stored());
    var toggle = document.getElementById("theme-toggle");
    if (toggle) {
      toggle.addEventListener("click", function () {
        var next = THEMES[(THEMES.indexOf(stored()) + 1) % THEMES.length];
        try { localStorage.setItem(KEY, next); } catch (e) { /* private mode */ }
        apply(next);
      });
    }
    var live = document.body.getAttribute("data-live");
    if (live) { connect(live); }
    picks();
  });

  // The instances table's selection for bulk actions: kept across the live refreshes
  // (the table is re-rendered by the server on every event).
  var picked = {};
  function picks() {
    var bar = document.getElementById("bulk");
    if (!bar) { return; }
    function sync() {
      var boxes = document.querySelectorAll("input.pick-one");
      var shown = 0;
      boxes.forEach(function (box) { box.checked = !!picked[box.value]; if (box.checked) { shown++; } });
      var all = document.getElementById("pick-all");
      if (all) { all.checked = boxes.length > 0 && shown === boxes.length; }
      var count = document.getElementById("picked");
      if (count) { count.textContent = Object.keys(picked).length + " selected"; }
    }
    document.addEventListener("change", function (event) {
      var box = event.target;
      if (box.classList && box.classList.contains("pick-one")) {
        if (box.checked) { picked[box.value] = true; } else { delete picked[box.value]; }
      } else if (box.id === "pick-all") {
        document.querySelectorAll("input.pick-one").forEach(function (one) {
          if (box.checked) { picked[one.value] = true; } else { delete picked[one.value]; }
        });
      } else { return; }
      sync();
    });
    document.body.addEventListener("htmx:afterSettle", sync);
    document.body.addEventListener("htmx:configRequest", function (event) {
      if (event.detail.elt !== bar) { return; }
      // selected rows a filter hid are still selected: send every picked name
      event.detail.parameters.delete ? event.detail.parameters.delete("names") : delete event.detail.parameters.names;
      var names = Object.keys(picked);
      if (event.detail.parameters.append) {
        names.forEach(function (n) { event.detail.parameters.append("names", n); });
      } else { event.detail.parameters.names = names; }
    });
    sync();
  }
})();
