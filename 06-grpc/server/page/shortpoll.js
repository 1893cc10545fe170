// Short polling: ask GET /updates?after=<cursor> every second.
"use strict";

(function () {
  const view = pane("short");
  const cursor = follower(view);
  const intervalMs = 1000;

  async function poll() {
    let more = false;
    try {
      more = await cursor.take(await fetch("updates?" + cursor.query(), { cache: "no-store" }));
      view.state("polling every " + intervalMs / 1000 + "s, cursor " + cursor.cursor);
    } catch (err) {
      view.state("server unreachable (" + err.message + "), retrying");
    }
    setTimeout(poll, more ? 0 : intervalMs); // a batch of several: the rest at once
  }
  poll();
})();
