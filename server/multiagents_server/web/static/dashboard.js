// The dashboard's only script: live fragments over server-sent events,
// the steps' output as it comes, "show all" for cut payloads and output,
// the action forms, sign in and out.
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

// The steps' output (the execution page's #output card, kept as it is when
// the rest of the page is rendered again). One block per epoch: an attempt
// of a step or of its compensation. Text is only ever set as text.
const epochs = new Map();

function epochOf(card, part) {
  const key = JSON.stringify([part.step, part.compensation, part.attempt]);
  let epoch = epochs.get(key);
  if (epoch) return epoch;
  // A later attempt: the earlier ones of the step are set apart, never spliced.
  for (const other of epochs.values()) {
    if (other.step === part.step && other.compensation === part.compensation
        && other.attempt < part.attempt) supersede(other, part.attempt);
  }
  const block = document.createElement("details");
  block.className = "o-epoch";
  block.open = true;
  block.dataset.step = part.step;
  block.dataset.attempt = String(part.attempt);
  block.dataset.compensation = part.compensation ? "1" : "0";
  const summary = document.createElement("summary");
  const name = document.createElement("span");
  name.className = "o-step mono";
  name.textContent = part.step;
  const label = document.createElement("span");
  label.className = "muted";
  label.textContent = ` ${part.compensation ? "compensation attempt" : "attempt"} ${part.attempt}`;
  const note = document.createElement("span");
  note.className = "o-note";
  summary.append(name, label, note);
  const more = document.createElement("button");
  more.type = "button";
  more.className = "secondary o-expand";
  more.hidden = true;
  more.textContent = "Show all (the end is shown)";
  const pre = document.createElement("pre");
  pre.className = "o-text";
  const head = document.createElement("span");  // up to the last cut: replaced by "Show all"
  const tail = document.createElement("span");  // appended since
  pre.append(head, tail);
  block.append(summary, more, pre);
  card.querySelector(".o-epochs").append(block);
  card.hidden = false;
  epoch = { step: part.step, compensation: part.compensation, attempt: part.attempt,
            block, note, more, pre, head, tail, url: "", expanded: false, loads: 0 };
  more.addEventListener("click", () => { epoch.expanded = true; loadWhole(epoch); });
  epochs.set(key, epoch);
  return epoch;
}

function supersede(epoch, attempt) {
  if (epoch.block.classList.contains("superseded")) return;
  epoch.block.classList.add("superseded");
  epoch.block.open = false;
  epoch.note.textContent = ` · superseded: attempt ${attempt} started over`;
}

async function loadWhole(epoch) {
  const load = ++epoch.loads;  // a later cut makes an earlier load stale
  try {
    const response = await fetch(epoch.url, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const text = await response.text();
    if (load !== epoch.loads) return;
    epoch.head.textContent = text;
    epoch.more.hidden = true;
  } catch (err) {
    banner(`Could not load the whole output: ${err.message}`);
  }
}

function showOutput(parts) {
  const card = document.getElementById("output");
  if (!card) return;
  for (const part of parts) {
    if (part.type === "gap") {
      const gap = document.createElement("p");
      gap.className = "o-gap hint";
      gap.textContent = `${part.dropped || "Some"} output entries were dropped before this page `
        + "read them (the stream keeps the newest output_stream_max_entries).";
      card.querySelector(".o-epochs").append(gap);
      card.hidden = false;
      continue;
    }
    const epoch = epochOf(card, part);
    if (part.type === "rewind") {
      epoch.note.textContent = " · started over";
      continue;
    }
    const pre = epoch.pre;
    const following = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    if (part.cut) {
      epoch.head.textContent = part.text;
      epoch.tail.textContent = "";
      epoch.url = part.expand;
      if (epoch.expanded) loadWhole(epoch);
      else epoch.more.hidden = false;
    } else if (epoch.tail.firstChild) {
      epoch.tail.firstChild.appendData(part.text);
    } else {
      epoch.tail.textContent = part.text;
    }
    if (following) pre.scrollTop = pre.scrollHeight;
  }
}

// Replace the section's content with `html`, except `kept` (a child of the
// section, one of `html` too): it stays in the page as it is (scroll included).
function replaceAround(section, html, kept) {
  if (!kept) {
    section.innerHTML = html;
    return;
  }
  const fresh = document.createElement("template");
  fresh.innerHTML = html;
  const nodes = [...fresh.content.childNodes];
  const at = nodes.findIndex((node) => node.id === kept.id);
  for (const node of [...section.childNodes]) if (node !== kept) node.remove();
  kept.before(...nodes.slice(0, Math.max(at, 0)));
  kept.after(...nodes.slice(at + 1));
}

function follow(section) {
  const source = new EventSource(section.dataset.live);
  section.dataset.updates = "0";
  source.addEventListener("update", (e) => {
    replaceAround(section, e.data, section.querySelector(":scope > #output"));
    section.dataset.updates = String(Number(section.dataset.updates) + 1);
    applyExpanded(section);
    syncActions(section);
  });
  source.addEventListener("output", (e) => showOutput(JSON.parse(e.data)));
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
