// WebSockets: one connection that carries updates to the page and the
// page's publishes to the server. The server sends a hello with its
// position, then every update after the cursor, each as the update JSON; a
// message with a type field is a control message, such as the outcome of a
// publish. Unlike EventSource, a WebSocket never reconnects by itself: when
// it closes, the page opens the next one, resuming after its cursor.
"use strict";

(function () {
  const view = pane("ws");
  let after = 0;
  let epoch = "";
  const cursor = () => (epoch ? epoch + "-" + after : String(after));
  let socket = null;
  let failures = 0; // sockets closed in a row before a hello

  // The server answers the publishes in the order they were sent: each
  // outcome settles the oldest publish still waiting.
  const waiting = [];
  publishThroughSocket = (text) => {
    if (socket.readyState !== WebSocket.OPEN) return null;
    socket.send(JSON.stringify({ data: text }));
    return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
  };

  function connect() {
    // The socket's URL is this page's, with ws: or wss: for http: or https:,
    // so that it works behind any host, port and TLS the page was served with.
    const url = new URL("ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.search = new URLSearchParams({ after: cursor() });
    socket = new WebSocket(url);
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "hello") {
        // Another server run's hello comes with a reset, and the epoch changes
        // with the reset: a socket that drops between the two still asks
        // again with the old epoch, and still hears of the gap.
        if (after === 0 || !epoch || epoch === message.epoch) epoch = message.epoch;
        failures = 0;
      } else if (message.type === "reset") {
        view.gap("server cannot resume after " + after + "; continuing from " + message.last);
        epoch = message.epoch;
        after = message.last;
      } else if (message.type === "published") {
        waiting.shift()?.resolve(message.id);
      } else if (message.type === "error") {
        waiting.shift()?.reject(new Error(message.reason));
      } else if (!message.type) {
        view.show(message);
        after = message.id;
      }
      view.state("open, cursor " + cursor());
    };
    socket.onclose = (event) => {
      // A publish sent on this socket may or may not have been published:
      // its outcome is lost with the socket.
      for (const publish of waiting.splice(0)) {
        publish.reject(new Error("socket closed before the outcome came"));
      }
      // Back off with jitter: every page lost the server at the same moment.
      failures++;
      const delay = Math.min(5000, 100 * 2 ** failures) * (0.5 + Math.random() / 2);
      // 1006 is no close frame at all; 1001 is a server shutting down, 1013
      // one that found this page too slow to keep up: its reason says so.
      view.state("closed " + event.code + (event.reason ? " " + event.reason : "") +
        "; reconnecting in " + Math.round(delay) + " ms, after " + cursor());
      setTimeout(connect, delay);
    };
  }
  connect();
})();
