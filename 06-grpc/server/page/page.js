// Shared by every pane: how a pane shows updates, gaps and its state, and the
// publish box. Each strategy lives in its own script.
"use strict";

// pane returns the view of one strategy's section.
function pane(id) {
  const section = document.getElementById(id);
  const list = section.querySelector(".updates");
  const state = section.querySelector(".state");
  function add(text, className) {
    const item = document.createElement("li");
    item.textContent = text; // never innerHTML: updates are user text
    if (className) item.className = className;
    list.prepend(item);
    while (list.children.length > 200) list.lastChild.remove();
  }
  return {
    show(update) { add(update.id + " " + update.data); },
    gap(text) { add("gap: " + text, "gap"); },
    state(text) { state.textContent = text; },
  };
}

// follower keeps a pane's cursor: it shows what a poll answered, says so
// when the server cannot resume, and never shows an update twice.
function follower(view) {
  let after = 0;
  let epoch = "";
  return {
    get after() { return after; },
    // cursor is the position as the server reads it: EPOCH-ID once the
    // epoch is known, so that a restarted server cannot pass its own
    // updates off as the ones after ours.
    get cursor() { return epoch ? epoch + "-" + after : String(after); },
    // query returns the poll's parameters: the cursor, and any extra ones.
    query(extra) {
      return new URLSearchParams({ after: this.cursor, ...extra });
    },
    // take handles one answer of GET /updates, and returns true when the
    // server holds more than the answer carried; it throws on an error status.
    async take(answer) {
      if (answer.status === 204) return false; // a long poll's wait ended: nothing new
      if (answer.status === 410) {
        const body = await answer.json();
        view.gap("server cannot resume after " + after + "; continuing from " + body.last);
        after = body.last;
        epoch = body.epoch;
        return false;
      }
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const body = await answer.json();
      epoch = body.epoch;
      for (const update of body.updates) {
        if (update.id <= after) continue;
        view.show(update);
        after = update.id;
      }
      return after < body.last;
    },
  };
}

// publishThroughSocket publishes text through a pane's open socket and
// returns a promise of the new update's id, or returns null when no socket
// is open; the WebSocket pane sets it.
let publishThroughSocket = () => null;

// publishWithPOST publishes text with POST /publish, and returns the new
// update's id.
async function publishWithPOST(text) {
  const answer = await fetch("publish", { method: "POST", body: text });
  if (!answer.ok) throw new Error(answer.status + " " + (await answer.text()).trim());
  const update = await answer.json();
  return update.id;
}

document.getElementById("publish").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  const shown = document.getElementById("published");
  try {
    const id = await (publishThroughSocket(input.value) ?? publishWithPOST(input.value));
    shown.textContent = "published #" + id;
    input.value = "";
  } catch (err) {
    shown.textContent = "not published: " + err.message;
  }
});
