// Short polling: ask GET /updates?after=<cursor> every second.
"use strict";

(function () {
  const view = pane("short");
  const intervalMs = 1000;
  let after = 0;
  let epoch = "";

  async function poll() {
    try {
      const query = new URLSearchParams({ after: String(after) });
      if (epoch) query.set("epoch", epoch);
      const answer = await fetch("updates?" + query, { cache: "no-store" });
      const body = await answer.json();
      if (answer.status === 410) {
        view.gap("server cannot resume after " + after + "; continuing from " + body.last);
        after = body.last;
        epoch = body.epoch;
      } else if (answer.ok) {
        epoch = body.epoch;
        for (const update of body.updates) {
          if (update.id <= after) continue; // never show an update twice
          view.show(update);
          after = update.id;
        }
      } else {
        throw new Error("HTTP " + answer.status);
      }
      view.state("polling every " + intervalMs / 1000 + "s, cursor " + after);
    } catch (err) {
      view.state("server unreachable (" + err.message + "), retrying");
    }
    setTimeout(poll, intervalMs);
  }
  poll();
})();
