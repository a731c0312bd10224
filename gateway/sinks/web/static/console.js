// SME-MET web console: renders the JSON documents of /api/v1 as they arrive
// on one Server-Sent Events stream.  No library, no build step; every text
// goes in through textContent (never HTML), so names from nodes cannot inject.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const page = document.body.dataset.page;

  if (page === "login") {
    if (location.hash === "#failed") $("login-failed").hidden = false;
    return;
  }

  const view = {
    name: "overview", node: "",
    query: { q: "", state: "", sort: "state", order: "asc", offset: 0, limit: 50 },
  };
  let stream = null;
  let lastMessage = 0;

  // ------------------------------------------------------------ formatting

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.max(0, seconds);
    if (s < 60) return `${s < 10 ? s.toFixed(1).replace(/\.0$/, "") : Math.round(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.round((s % 86400) / 3600)} h`;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    let v = n;
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
    return `${v < 10 && i ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
  }

  const count = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"));
  const rate = (n) => `${n < 10 ? n.toFixed(1) : count(Math.round(n))}/s`;

  function value(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
    return String(v);
  }

  function healthValue(name, v) {
    if (typeof v !== "number") return value(v);
    if (name === "uptime") return duration(v);
    if (name === "heap_free") return bytes(v);
    if (name === "rssi") return `${v} dBm`;
    return value(v);
  }

  function stateChip(state, text) {
    return el("span", { class: `state state-${state}`, "data-state": state, text: text || state });
  }

  function sparkline(times, values, quality, width, height, cls) {
    const svgNS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const points = [];
    for (let i = 0; i < times.length; i += 1) if (values[i] !== null) points.push([times[i], values[i], i]);
    const t0 = times.length ? times[0] : 0;
    const t1 = times.length ? times[times.length - 1] : 1;
    const numbers = points.map((p) => p[1]);
    let lo = Math.min(...numbers);
    let hi = Math.max(...numbers);
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (hi === lo) { hi += 1; lo -= 1; }
    const x = (t) => (t1 > t0 ? ((t - t0) / (t1 - t0)) * (width - 4) + 2 : width / 2);
    const y = (v) => height - 2 - ((v - lo) / (hi - lo)) * (height - 4);
    const line = document.createElementNS(svgNS, "polyline");
    line.setAttribute("points", points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "));
    if (cls) line.setAttribute("class", cls);
    svg.append(line);
    if (quality) {
      for (let i = 0; i < times.length; i += 1) {
        if (quality[i] === "good") continue;
        const dot = document.createElementNS(svgNS, "circle");
        dot.setAttribute("cx", x(times[i]).toFixed(1));
        dot.setAttribute("cy", values[i] === null ? height - 3 : y(values[i]).toFixed(1));
        dot.setAttribute("r", "2");
        dot.setAttribute("class", quality[i]);
        svg.append(dot);
      }
    }
    return svg;
  }

  // The record that corrected the shown value, and what needs attention
// about the sensor's calibration (docs/processing.md), under its chain.
function calibrationNote(c) {
  const st = c.calibration_status;
  const parts = [];
  if (c.calibration) parts.push(`calibration ${c.calibration}`);
  if (st && st.state === "due-soon") parts.push(`due in ${Math.floor(st.due_in_days)} d (${st.due})`);  // whole days, as smemet nodes
  if (st && st.state === "overdue") parts.push(`calibration overdue since ${st.due}`);
  if (st && st.state === "sat-failed") parts.push("system accuracy test failed");
  if (st && st.usage_exceeded) parts.push("past its usage limit");
  if (!parts.length) return null;
  const alarm = st && (st.state === "overdue" || st.state === "sat-failed" || st.usage_exceeded);
  return el("span", { class: alarm ? "reason err" : "reason", "data-calibration": st ? st.state : "applied",
                      text: parts.join(" · ") });
}

function chainText(chain) {
    if (!chain.length) return "unprocessed";
    return chain.map((step) => {
      const params = Object.entries(step.parameters).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("/") : v}`);
      return params.length ? `${step.type}(${params.join(", ")})` : step.type;
    }).join(" → ");
  }

  function cell(label, content, cls) {
    return el("td", { "data-label": label, class: cls }, content);
  }

  // ------------------------------------------------------------ rendering

  function renderGateway(g) {
    $("gw-id").textContent = g.id;
    $("gw-version").textContent = `v${g.version}`;
    document.title = `${g.id} · SME-MET gateway`;
    $("logout").hidden = !g.console.login;
    $("gw-uptime").textContent = duration(g.uptime_s);
    $("gw-impl").textContent = g.implementation === "cython" ? "Cython (compiled)" : "pure Python";
    const n = g.nodes;
    $("gw-nodes").textContent = `${n.total} (${n.ok} ok, ${n.late} late, ${n.silent} silent, ${n.waiting} waiting)`;
    $("gw-routes").textContent = `${g.routes.connected} of ${g.routes.total} connected`;
    const s = g.storage;
    const used = s.used_fraction || 0;
    const bar = $("storage-bar");
    bar.style.width = `${Math.min(100, used * 100).toFixed(1)}%`;
    bar.className = `bar-fill${s.full ? " full" : used > 0.8 ? " high" : ""}`;
    $("storage-used").textContent = `${bytes(s.bytes)} of ${bytes(s.max_bytes)} (${(used * 100).toFixed(1)} %)`;
    $("storage-room").textContent = bytes(s.room_bytes);
    $("storage-depth").textContent = `${count(s.frames)} frames, ${count(s.measurements)} measurements`;
    $("storage-lag").textContent = `${count(s.processing_lag_frames)} frames`;
    const i = g.ingest;
    $("ingest-frames").textContent = rate(i.frames_per_s);
    $("ingest-measurements").textContent = rate(i.measurements_per_s);
    $("ingest-rejects").textContent = rate(i.rejects_per_s);
    $("ingest-paused").textContent = i.paused ? `paused (${count(i.backlog_frames)} frames behind)` : "reading";
    $("rejects-window").textContent = duration(g.rejects.window_s);
    const list = $("rejects-list");
    const recent = Object.entries(g.rejects.recent).sort((a, b) => b[1] - a[1]);
    list.replaceChildren(...(recent.length
      ? recent.map(([reason, k]) => el("li", { "data-reason": reason }, el("strong", { text: count(k) }), ` ${reason}`))
      : [el("li", { class: "muted", text: "none" })]));
    const alarms = [];
    if (s.full) alarms.push(el("div", { class: "alarm", id: "alarm-full" },
      `Storage full: the gateway refuses frames (nodes keep them). ${s.full_reason}`));
    if (i.paused) alarms.push(el("div", { class: "alarm warn", id: "alarm-paused" },
      "Ingest paused: processing is behind; nodes keep their frames."));
    if (g.routes.total > g.routes.connected) alarms.push(el("div", { class: "alarm warn", id: "alarm-routes" },
      `${g.routes.total - g.routes.connected} route(s) disconnected: their backlog waits in the outbox.`));
    $("alarms").replaceChildren(...alarms);
  }

  function renderNodes(d) {
    const c = d.counts;
    $("node-counts").textContent = `${d.total} · ${c.ok} ok · ${c.late} late · ${c.silent} silent · ${c.waiting} waiting`;
    const rows = d.nodes.map((n) => {
      const seen = n.state === "waiting" ? "waiting for first frame"
        : n.age_s === null ? "not since the gateway started" : `${duration(n.age_s)} ago`;
      const rejects = Object.entries(n.rejects).map(([r, k]) =>
        el("span", { class: r === "bad-mac" ? "err" : null, "data-reason": r, text: `${r === "bad-mac" ? "wrong key" : r} ${k}` }));
      const rejectCell = rejects.length ? el("span", {}, ...rejects.flatMap((x, j) => (j ? [", ", x] : [x]))) : "—";
      const tr = el("tr", { "data-node": n.node, "data-state": n.state, class: `row-${n.state}` },
        cell("Node", el("a", { href: `#/node/${encodeURIComponent(n.node)}`, text: n.node })),
        cell("Last seen", el("span", {}, stateChip(n.state, seen))),
        cell("Firmware", n.fw || "—"),
        cell("Uptime", duration(n.uptime_s)),
        cell("Reset cause", n.reset_cause || "—"),
        cell("Store depth", n.store_depth === null ? "—" : count(n.store_depth), "num"),
        cell("Readings", n.quality ? el("span", { class: `state q-${n.quality}`, text: n.quality }) : "—"),
        cell("Clock", n.clock_synced === null ? "—" : n.clock_synced ? "synced" : "not synced"),
        cell("Rejects", rejectCell),
        cell("Link", n.link.kind ? `${n.link.kind} ${n.link.peer || ""}` : "—"));
      tr.addEventListener("click", (event) => {
        if (event.target.tagName !== "A") location.hash = `#/node/${encodeURIComponent(n.node)}`;
      });
      return tr;
    });
    $("nodes").tBodies[0].replaceChildren(...rows);
    const first = d.matched ? d.offset + 1 : 0;
    const last = Math.min(d.offset + d.limit, d.matched);
    $("page-info").textContent = `${first}–${last} of ${d.matched}${d.matched !== d.total ? ` (filtered from ${d.total})` : ""}`;
    $("page-prev").disabled = d.offset === 0;
    $("page-next").disabled = d.offset + d.limit >= d.matched;
    for (const th of $("nodes").tHead.rows[0].cells) {
      const on = th.dataset.sort === view.query.sort;
      th.classList.toggle("sorted", on);
      th.classList.toggle("desc", on && view.query.order === "desc");
    }
  }

  function renderWaiting(d) {
    // Commissioning: registered nodes whose first frame has not arrived (the stream's "waiting" event).
    const waiting = d.nodes;
    $("commissioning").hidden = waiting.length === 0;
    $("waiting-list").replaceChildren(...waiting.map((n) => {
      const rejected = Object.entries(n.rejects);
      const hints = rejected.length
        ? rejected.map(([r, k]) => el("li", { text: `${k} frames rejected: ${r === "bad-mac" ? "wrong key — re-provision the node with the gateway's key" : r}` }))
        : [el("li", { text: "check power, node id and key (smemet commission), and the gateway address in its config" })];
      return el("li", { "data-node": n.node },
        el("a", { href: `#/node/${encodeURIComponent(n.node)}`, text: n.node }), " ", stateChip("waiting", "waiting for first frame"),
        el("ul", {}, ...hints));
    }));
  }

  function renderRoutes(d) {
    const rows = d.routes.map((r) => {
      const h = r.lag_history;
      const receives = [
        `include ${r.receives.include.join(", ")}`,
        r.receives.exclude.length ? `exclude ${r.receives.exclude.join(", ")}` : null,
        r.receives.kinds.join(" + "),
      ].filter(Boolean).join(" · ");
      const state = r.connected ? "connected" : `disconnected${r.down_for_s !== null ? ` for ${duration(r.down_for_s)}` : ""}`;
      return el("tr", { "data-route": r.name, "data-state": r.state },
        cell("Route", el("span", {}, el("strong", { text: r.name }), el("span", { class: "reason", text: `${r.kind} · ${r.description}` }))),
        cell("State", stateChip(r.state, state)),
        cell("Lag", el("span", { class: "lag" }, `${count(r.lag_measurements)} measurements · ${duration(r.lag_seconds)}`)),
        cell("Backlog", `${count(r.lag_frames)} frames`, "num"),
        cell("Lag, last minutes", h.t.length > 1 ? sparkline(h.t, h.seconds, null, 120, 24, "lag") : "—"),
        cell("Receives", receives),
        cell("Last error", r.last_error ? el("span", { class: "err", text: r.last_error }) : "—"));
    });
    $("routes").tBodies[0].replaceChildren(...rows);
  }

  function renderModbus(d) {
    $("modbus-panel").hidden = d.devices.length === 0;
    const now = Date.now() / 1000;
    $("modbus").tBodies[0].replaceChildren(...d.devices.map((m) => el("tr", { "data-device": m.name, "data-state": m.state },
      cell("Device", el("a", { href: `#/node/${encodeURIComponent(m.name)}`, text: m.name })),
      cell("State", stateChip(m.state === "ok" ? "ok" : m.state, m.state === "ok" ? "polled" : m.state)),
      cell("Address", `${m.transport} ${m.address} unit ${m.unit}`),
      cell("Period", duration(m.period_s)),
      cell("Last poll", m.last_poll ? `${duration(now - m.last_poll)} ago` : "—"),
      cell("Last error", m.last_error ? el("span", { class: "err", text: `${m.last_error}${m.last_error_at ? ` (${duration(now - m.last_error_at)} ago)` : ""}` }) : "—"))));
  }

  function renderNode(d) {
    if (d.error) {
      $("node-title").textContent = view.node;
      $("node-state").replaceChildren(el("span", { class: "err", text: d.error }));
      return;
    }
    const n = d.node;
    $("node-title").textContent = n.node;
    $("node-state").replaceChildren(stateChip(n.state, n.state === "waiting" ? "waiting for first frame" : n.state));
    const facts = [
      ["Last seen", n.age_s === null ? (n.state === "waiting" ? "never" : "not since the gateway started") : `${duration(n.age_s)} ago`],
      ["Usual period", `${duration(n.period_s)}${n.period_learnt ? "" : " (assumed until learnt)"}`],
      ["Firmware", n.fw || "—"], ["Uptime", duration(n.uptime_s)], ["Reset cause", n.reset_cause || "—"],
      ["Store depth", n.store_depth === null ? "—" : `${count(n.store_depth)} frames unacknowledged`],
      ["Clock", n.clock_synced === null ? "—" : n.clock_synced ? "synced" : "not synced (relative times)"],
      ["Link", n.link.kind ? `${n.link.kind} ${n.link.peer || ""}` : "—"],
      ["Key", n.registered ? "registered" : "none (virtual or removed)"],
    ];
    const dl = $("node-facts");
    dl.replaceChildren();
    for (const [k, v] of facts) dl.append(el("dt", { text: k }), el("dd", { text: v }));
    for (const r of d.rejects) {
      dl.append(el("dt", { text: "Rejected" }), el("dd", { class: "err", "data-reason": r.reason },
        `${count(r.count)} × ${r.title} — ${r.check}`));
    }
    $("node-checks").hidden = d.checks.length === 0;
    $("node-check-list").replaceChildren(...d.checks.map((c) => el("li", { text: c })));
    $("no-channels").hidden = d.channels.length > 0;
    $("channels").tBodies[0].replaceChildren(...d.channels.map((c) => {
      const h = c.history;
      return el("tr", { "data-channel": c.channel, "data-quality": c.quality },
        cell("Channel", el("strong", { text: c.channel })),
        cell("Value", c.value === null ? el("span", { class: "muted", text: "no value" })
          : el("span", { class: "value" }, value(c.value), c.unit ? ` ${c.unit}` : "")),
        cell("Quality", el("span", {}, el("span", { class: `state q-${c.quality}`, text: c.quality }),
          c.reason ? el("span", { class: "reason", text: c.reason }) : null)),
        cell("Age", duration(c.age_s)),
        cell("Last minutes", h.t.length > 1 ? sparkline(h.t, h.v, h.q, 160, 32) : "—"),
        cell("Processing", el("span", {}, el("span", { class: "chain", text: chainText(c.chain) }),
          calibrationNote(c))));
    }));
    const health = Object.entries(d.health);
    $("health-panel").hidden = health.length === 0;
    $("health-age").textContent = d.health_time ? `(${duration(d.now - d.health_time)} ago)` : "";
    const hl = $("health");
    hl.replaceChildren();
    for (const [k, v] of health.sort()) hl.append(el("dt", { text: k }), el("dd", { text: healthValue(k, v) }));
  }

  // ------------------------------------------------------------ live stream

  function streamUrl() {
    if (view.name === "node") return `/api/v1/events?view=node&node=${encodeURIComponent(view.node)}`;
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(view.query)) if (v !== "" && v !== null) q.set(k, v);
    return `/api/v1/events?view=overview&${q}`;
  }

  function setLive(state, text) {
    const live = $("live");
    live.dataset.live = state;
    live.textContent = text;
  }

  function on(name, render) {
    stream.addEventListener(name, (event) => {
      lastMessage = Date.now();
      setLive("live", "live");
      render(JSON.parse(event.data));
    });
  }

  function connect() {
    if (stream) stream.close();
    stream = new EventSource(streamUrl());
    on("gateway", renderGateway);
    on("nodes", renderNodes);
    on("waiting", renderWaiting);
    on("routes", renderRoutes);
    on("modbus", renderModbus);
    on("node", renderNode);
    stream.addEventListener("expired", () => { location.href = "/login"; });
    stream.onerror = async () => {
      setLive("lost", "reconnecting…");
      try {
        const answer = await fetch("/api/v1/session", { headers: { Accept: "application/json" } });
        if (answer.status === 401) location.href = "/login";
      } catch (e) { /* the gateway is away: EventSource retries by itself */ }
    };
  }

  function route() {
    const match = location.hash.match(/^#\/node\/(.+)$/);
    view.name = match ? "node" : "overview";
    view.node = match ? decodeURIComponent(match[1]) : "";
    $("overview").hidden = view.name !== "overview";
    $("node-page").hidden = view.name !== "node";
    if (view.name === "node") {
      $("node-title").textContent = view.node;
      $("channels").tBodies[0].replaceChildren();
    }
    connect();
  }

  // ------------------------------------------------------------ controls

  let typing = null;
  $("node-filter").addEventListener("input", (event) => {
    clearTimeout(typing);
    typing = setTimeout(() => { view.query.q = event.target.value.trim(); view.query.offset = 0; connect(); }, 250);
  });
  for (const chip of document.querySelectorAll("#state-chips .chip")) {
    chip.addEventListener("click", () => {
      for (const other of document.querySelectorAll("#state-chips .chip")) other.classList.toggle("on", other === chip);
      view.query.state = chip.dataset.state;
      view.query.offset = 0;
      connect();
    });
  }
  for (const th of document.querySelectorAll("#nodes th[data-sort]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.sort;
      view.query.order = view.query.sort === key && view.query.order === "asc" ? "desc" : "asc";
      view.query.sort = key;
      connect();
    });
  }
  $("page-prev").addEventListener("click", () => { view.query.offset = Math.max(0, view.query.offset - view.query.limit); connect(); });
  $("page-next").addEventListener("click", () => { view.query.offset += view.query.limit; connect(); });

  window.addEventListener("hashchange", route);
  setInterval(() => { if (lastMessage && Date.now() - lastMessage > 5000) setLive("lost", "no updates"); }, 1000);
  route();
}());
