// gRPC: a page cannot be a gRPC client, since a browser gives its scripts
// neither the HTTP/2 trailers where gRPC puts each call's status nor raw
// HTTP/2 frames (gRPC-Web or Connect, through a proxy, is how browsers get
// there). So this pane shows the server's side: every open Subscribe stream,
// from GET /grpc/subscribers every second, as the Webhooks pane asks for
// registrations.
"use strict";

(function () {
  const section = document.getElementById("grpc");
  const list = section.querySelector(".streams");
  const state = section.querySelector(".state");
  const intervalMs = 1000;
  let shown = ""; // the answer the list shows: redrawn only when it changes

  // line returns one line of a row with its text set as text: a peer
  // address comes from the network, and must never become markup.
  function line(className, text) {
    const element = document.createElement("div");
    element.className = className;
    element.textContent = text;
    return element;
  }

  function row(stream) {
    const item = document.createElement("li");
    item.append(
      line("peer", stream.peer),
      line("progress", "cursor " + stream.cursor + ", open since " + new Date(stream.since).toLocaleTimeString()),
    );
    return item;
  }

  async function poll() {
    try {
      const answer = await fetch("grpc/subscribers", { cache: "no-store" });
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const text = await answer.text();
      const streams = JSON.parse(text).subscribers;
      if (text !== shown) {
        list.replaceChildren(...streams.map(row));
        shown = text;
      }
      state.textContent = streams.length + " open; asking every " + intervalMs / 1000 + "s";
    } catch (err) {
      state.textContent = "server unreachable (" + err.message + "), retrying";
    }
    setTimeout(poll, intervalMs);
  }
  poll();
})();
