// The live view of the demo (and of a node's or relay's /debug/scone/): a
// snapshot arrives twice a second over server-sent events ("events", next to
// the page); when the snapshot allows actions, buttons POST kill/NAME and
// restart/NAME.
"use strict";
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

async function act(verb, name) {
  const r = await fetch(verb + "/" + encodeURIComponent(name), {method: "POST"});
  if (!r.ok) console.warn(verb, name, r.status, await r.text());
}

function renderGroups(snap) {
  const top = $("#topology");
  for (const g of top.querySelectorAll(".group.server")) g.remove();
  for (const g of snap.groups) {
    const members = el("div", {class: "members"});
    for (const m of g.members) {
      let button = "";
      if (snap.actions) {
        button = m.up
          ? el("button", {"data-kill": m.name}, "kill")
          : el("button", {"data-restart": m.name}, "restart");
        button.onclick = () => act(m.up ? "kill" : "restart", m.name);
      }
      members.append(el("div", {class: "member " + (m.up ? "up" : "down"), "data-name": m.name},
        el("span", {class: "state"}, m.up ? (m.rate ? Math.round(m.rate) + " calls/s" : "up") : "DOWN"),
        el("div", {class: "name"}, m.name),
        el("div", {class: "addr"}, m.addr),
        m.detail ? el("div", {class: "detail"}, m.detail) : "",
        button));
    }
    top.append(el("div", {class: "group server", "data-group": g.name}, el("h3", {}, g.name), members));
  }
}

function renderSessions(snap) {
  const clients = $("#clients .members");
  clients.replaceChildren(el("div", {class: "client"}, snap.clients ||
    (snap.sessions.length + " shopper sessions" + (snap.mode === "client" ? ", each holding its SCONEs" : ", with no SCONE code"))));
  // The notes on versions and ended sessions explain the SCONEs column:
  // shown when some session lists its SCONEs.
  const listed = snap.sessions.some((s) => (s.scones || []).length > 0);
  $("#versions").hidden = $("#ended").hidden = !listed;
  const body = $("#sessions tbody");
  body.replaceChildren();
  for (const s of snap.sessions) {
    const scones = (s.scones || []).map((x) => x.service + " v" + x.version +
      (x.status ? " (" + x.status + (x.endpoint ? " at " + x.endpoint : "") + ")" : "")).join(", ") || "-";
    body.append(el("tr", {"data-session": s.id},
      el("td", {}, s.id),
      el("td", {}, (s.holders || []).join(", ") || "nowhere yet"),
      el("td", {}, scones),
      el("td", {}, s.bytes ? String(s.bytes) : "-"),
      el("td", {}, String(s.calls)),
      el("td", {class: s.lost ? "lost-n" : "lost-0"}, String(s.lost))));
  }
}

// duration says how long seconds are: "12 s", "3 min 05 s".
function duration(seconds) {
  const s = Math.floor(seconds);
  return s < 60 ? s + " s" : Math.floor(s / 60) + " min " + String(s % 60).padStart(2, "0") + " s";
}

function render(snap) {
  $("#summary").textContent = (snap.done ? "shopping over; " : "") + "mode " + snap.mode +
    ": per-session state lives " + snap.where + "; running for " + duration(snap.elapsed);
  $("#rate").textContent = Math.round(snap.rate);
  $("#calls").textContent = snap.calls;
  $("#lost").textContent = snap.lost;
  $("#lost").className = snap.lost ? "bad" : "ok";
  $("#kills").textContent = snap.kills;
  $("#restarts").textContent = snap.restarts;
  const errs = Object.entries(snap.errors || {}).map(([c, n]) => c + " " + n).join(", ");
  $("#errors").textContent = errs || "none";
  renderGroups(snap);
  renderSessions(snap);
  document.body.dataset.ready = "1";
}

const events = new EventSource("events");
events.onmessage = (e) => render(JSON.parse(e.data));
events.onerror = () => { $("#summary").textContent = "disconnected: the demo has ended"; };
