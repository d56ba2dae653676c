// The dashboard's only script: live fragments over server-sent events,
// "show all" for cut payloads, the action forms, sign in and out.
// No framework, no build step.
"use strict";

const ACTION_HEADER = { "X-MultiAgents-Request": "1", "Content-Type": "application/json" };

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST", headers: ACTION_HEADER, body: JSON.stringify(body), credentials: "same-origin",
  });
  let answer = {};
  try { answer = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) throw new Error(answer.error || `${response.status} ${response.statusText}`);
  return answer;
}

// Payloads the user expanded stay expanded across live updates.
const expanded = new Map();

function applyExpanded(root) {
  for (const [key, text] of expanded) {
    const pre = root.querySelector(`pre.json[data-key="${key}"]`);
    if (pre) pre.textContent = text;
    const button = root.querySelector(`button[data-expand][data-key="${key}"]`);
    if (button) button.remove();
  }
}

// Action forms are offered only in the states they apply to.
function syncActions(root) {
  const summary = root.querySelector("[data-state]");
  if (!summary) return;
  const state = summary.dataset.state;
  for (const form of document.querySelectorAll("form[data-action]")) {
    form.hidden = !form.dataset.states.split(" ").includes(state);
  }
}

function follow(section) {
  const source = new EventSource(section.dataset.live);
  section.dataset.updates = "0";
  source.addEventListener("update", (e) => {
    section.innerHTML = e.data;
    section.dataset.updates = String(Number(section.dataset.updates) + 1);
    applyExpanded(section);
    syncActions(section);
  });
  source.addEventListener("end", () => { source.close(); section.dataset.ended = "1"; });
  source.addEventListener("failure", (e) => {
    source.close();
    banner(`Live updates stopped: ${e.data}`);
  });
}

function banner(text) {
  let el = document.querySelector(".banner");
  if (!el) {
    el = document.createElement("p");
    el.className = "banner";
    document.querySelector("main").prepend(el);
  }
  el.textContent = text;
}

document.addEventListener("click", async (e) => {
  const expand = e.target.closest("button[data-expand]");
  if (expand) {
    const response = await fetch(expand.dataset.expand, { credentials: "same-origin" });
    const text = await response.text();
    expanded.set(expand.dataset.key, text);
    applyExpanded(document);
    return;
  }
  if (e.target.closest("[data-logout]")) {
    await post("/logout", {});
    location.href = "/login";
  }
});

document.addEventListener("submit", async (e) => {
  const form = e.target;
  if (form.id === "login") {
    e.preventDefault();
    const message = form.querySelector(".form-message");
    try {
      await post("/login", { token: form.token.value });
      location.href = form.dataset.next || "/";
    } catch (err) {
      message.textContent = err.message;
    }
    return;
  }
  if (form.dataset.action) {
    e.preventDefault();
    const message = form.querySelector(".form-message");
    const values = Object.fromEntries(new FormData(form).entries());
    form.querySelector("button").disabled = true;
    try {
      const answer = await post(form.dataset.url, values);
      message.textContent = answer.message || "done";
      message.className = "form-message ok";
    } catch (err) {
      message.textContent = err.message;
      message.className = "form-message error";
    } finally {
      form.querySelector("button").disabled = false;
    }
  }
});

document.addEventListener("DOMContentLoaded", () => {
  for (const section of document.querySelectorAll("[data-live]")) follow(section);
});
