// Long polling: ask GET /updates?after=<cursor>&wait=30s, and ask again as
// soon as the answer arrives, so a poll is always waiting at the server.
"use strict";

(function () {
  const view = pane("long");
  const cursor = follower(view);
  let failures = 0;

  async function poll() {
    try {
      view.state("waiting for updates after " + cursor.after);
      await cursor.take(await fetch("updates?" + cursor.query({ wait: "30s" }), { cache: "no-store" }));
      failures = 0;
      setTimeout(poll, 0);
    } catch (err) {
      // Back off with jitter: every page lost the server at the same moment.
      failures++;
      const delay = Math.min(5000, 100 * 2 ** failures) * (0.5 + Math.random() / 2);
      view.state("server unreachable (" + err.message + "), retrying in " + Math.round(delay) + " ms");
      setTimeout(poll, delay);
    }
  }
  poll();
})();
