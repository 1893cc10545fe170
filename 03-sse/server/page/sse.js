// Server-Sent Events: one EventSource, one event per update. When the
// connection drops, the browser reconnects by itself after the server's retry
// time, sending the last id it saw as Last-Event-ID.
"use strict";

(function () {
  const view = pane("sse");
  const source = new EventSource("events");
  let after = 0;
  let epoch = "";
  let restarted = false; // a new server run, not yet explained by a reset

  source.addEventListener("hello", (event) => {
    const hello = JSON.parse(event.data);
    restarted = epoch !== "" && hello.epoch !== epoch;
    epoch = hello.epoch;
    view.state("streaming, cursor " + after);
  });
  source.addEventListener("reset", (event) => {
    const reset = JSON.parse(event.data);
    view.gap("server cannot resume after " + after + "; continuing from " + reset.last);
    after = reset.last;
    restarted = false;
  });
  source.onmessage = (event) => {
    const update = JSON.parse(event.data);
    if (update.id <= after) return; // never show an update twice
    if (restarted) {
      view.gap("the server restarted after " + after + "; updates may be missing");
      restarted = false;
    }
    view.show(update);
    after = update.id;
    view.state("streaming, cursor " + after);
  };
  source.onerror = () => {
    view.state("disconnected; the browser reconnects and resumes after " + after);
  };
})();
