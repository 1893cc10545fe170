// Webhooks: a page cannot receive them, since it cannot listen for the
// server's POSTs, so this pane shows the server's side: every registration
// and how its deliveries go, from GET /webhooks every second. A delivery
// changes the state on the server's own clock (a retry after its backoff,
// say), not on anything the page hears of, so the pane asks, as the short
// polling pane does.
"use strict";

(function () {
  const section = document.getElementById("webhooks");
  const list = section.querySelector(".hooks");
  const state = section.querySelector(".state");
  const intervalMs = 1000;
  let shown = ""; // the answer the list shows: redrawn only when it changes

  // line returns one line of a row with its text set as text: a registered
  // URL is whatever its registrant wrote, and must never become markup.
  function line(className, text) {
    const element = document.createElement("div");
    element.className = className;
    element.textContent = text;
    return element;
  }

  function row(hook) {
    const item = document.createElement("li");
    item.append(
      line("url", hook.url),
      line("progress", "delivered " + hook.delivered + ", cursor " + hook.cursor),
    );
    // The rest is only there while deliveries fail: failures in a row since
    // the last success, when the server tries again, and what went wrong.
    if (hook.failures > 0) {
      const next = hook.next_attempt ? ", next attempt at " + new Date(hook.next_attempt).toLocaleTimeString() : "";
      item.append(line("failures", "failures " + hook.failures + next));
    }
    if (hook.last_error) item.append(line("error", "last error: " + hook.last_error));
    if (hook.disabled) {
      item.className = "disabled";
      item.append(line("reason", "disabled: " + hook.reason));
    }
    return item;
  }

  async function poll() {
    try {
      const answer = await fetch("webhooks", { cache: "no-store" });
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const text = await answer.text();
      const hooks = JSON.parse(text).webhooks;
      if (text !== shown) {
        list.replaceChildren(...hooks.map(row));
        shown = text;
      }
      state.textContent = hooks.length + " registered; asking every " + intervalMs / 1000 + "s";
    } catch (err) {
      state.textContent = "server unreachable (" + err.message + "), retrying";
    }
    setTimeout(poll, intervalMs);
  }
  poll();
})();
