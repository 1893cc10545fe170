// Server-Sent Events: one EventSource, one event per update. When the
// connection drops, the browser reconnects by itself after the server's retry
// time, sending the last id it saw as Last-Event-ID. That id is the whole
// cursor, EPOCH-ID, so a restarted server knows it is not its own and answers
// with a reset event: the page needs no code to detect a restart.
"use strict";

(function () {
  const view = pane("sse");
  const source = new EventSource("events");
  let after = 0;
  let cursor = "0"; // the id of the last event, as the server wrote it

  source.addEventListener("hello", () => {
    view.state("streaming, cursor " + cursor);
  });
  source.addEventListener("reset", (event) => {
    const reset = JSON.parse(event.data);
    view.gap("server cannot resume after " + after + "; continuing from " + reset.last);
    after = reset.last;
    cursor = event.lastEventId;
  });
  source.onmessage = (event) => {
    const update = JSON.parse(event.data);
    if (update.id <= after) return; // never show an update twice
    view.show(update);
    after = update.id;
    cursor = event.lastEventId;
    view.state("streaming, cursor " + cursor);
  };
  source.onerror = () => {
    view.state("disconnected; the browser reconnects and resumes after " + cursor);
  };
})();
