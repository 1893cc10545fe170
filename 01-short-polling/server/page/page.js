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

document.getElementById("publish").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  const shown = document.getElementById("published");
  try {
    const answer = await fetch("publish", { method: "POST", body: input.value });
    if (!answer.ok) throw new Error(answer.status + " " + (await answer.text()).trim());
    const update = await answer.json();
    shown.textContent = "published #" + update.id;
    input.value = "";
  } catch (err) {
    shown.textContent = "not published: " + err.message;
  }
});
