// reprise dashboard: reads /v1/cache/stats, /v1/cache/stats/series and
// /v1/cache/top with the caller's key (Authorization header only, never in a
// URL), draws tiles, a chart and tables, refreshes every 5 s.
"use strict";

(function () {
  const KEY_STORAGE = "reprise.dashboard.key";
  const REFRESH_MS = 5000;
  const TYPE_COLORS = {
    memory: "#2f7ed8",
    redis: "#d9534f",
    semantic: "#8e44ad",
    coalesced: "#f0ad4e",
    stale: "#7f8c8d",
    mcp: "#16a085",
  };
  const TYPE_ORDER = ["memory", "redis", "semantic", "coalesced", "stale", "mcp"];

  // The formats tiles use (the browser test checks the text against them).
  const fmt = {
    rate: (v) => (v * 100).toFixed(1) + "%",
    int: (v) => Math.round(v).toLocaleString("en-US"),
    usd: (v) => "$" + (v !== 0 && Math.abs(v) < 1 ? v.toFixed(6) : v.toFixed(2)),
    ms: (v) => (v < 1000 ? Math.round(v) + " ms" : (v / 1000).toFixed(1) + " s"),
  };

  const $ = (id) => document.getElementById(id);
  let chart = null;
  let chartTypes = "";
  let timer = null;
  let scope = "namespace";

  function takeKeyFromHash() {
    const m = location.hash.match(/(?:^#|&)key=([^&]*)/);
    if (m) {
      sessionStorage.setItem(KEY_STORAGE, decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
  }

  function key() {
    return sessionStorage.getItem(KEY_STORAGE);
  }

  async function api(path, init) {
    const headers = Object.assign({}, (init && init.headers) || {});
    const k = key();
    if (k) headers["Authorization"] = "Bearer " + k;
    const response = await fetch(path, Object.assign({}, init, { headers }));
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const message = (body && body.error && body.error.message) || response.statusText;
      const error = new Error(response.status + ": " + message);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function showError(message) {
    const el = $("error");
    el.textContent = message || "";
    el.hidden = !message;
  }

  function setTile(id, value, format) {
    const el = $(id);
    const v = Number(value) || 0;
    el.dataset.value = String(v);
    el.textContent = format(v);
  }

  function view() {
    return $("view").value;
  }

  function drawTiles(stats) {
    const usd = stats.usd || {};
    setTile("kpi-hit-rate", stats.hit_rate, fmt.rate);
    setTile("kpi-requests", stats.requests, fmt.int);
    setTile("kpi-spend-usd", usd.spent, fmt.usd);
    setTile("kpi-saved-usd", usd.saved_by_cache, fmt.usd);
    setTile("kpi-provider-saved-usd", usd.saved_by_provider_cache, fmt.usd);
    setTile("kpi-tokens-saved", stats.tokens_saved, fmt.int);
    setTile("kpi-latency-saved-ms", stats.latency_saved_ms, fmt.ms);
    setTile("kpi-would-save-usd", (stats.observe || {}).would_save_usd, fmt.usd);
    const server = stats.server || {};
    $("mode").textContent = server.mode || "?";
    $("redis-state").textContent = server.redis || "?";
    $("view-label").textContent = stats.view || view();
  }

  function cell(text, value) {
    const td = document.createElement("td");
    td.textContent = text;
    if (value !== undefined) td.dataset.value = String(value);
    return td;
  }

  function fillTable(tbody, rows) {
    tbody.replaceChildren();
    for (const [name, c] of rows) {
      const usd = c.usd || {};
      const tr = document.createElement("tr");
      tr.append(
        cell(name),
        cell(fmt.int(c.requests || 0), c.requests || 0),
        cell(fmt.rate(c.hit_rate || 0), c.hit_rate || 0),
        cell(fmt.usd(usd.saved_by_cache || 0), usd.saved_by_cache || 0),
        cell(fmt.usd(usd.spent || 0), usd.spent || 0),
      );
      tbody.append(tr);
    }
  }

  function drawTables(stats) {
    const byRequests = (o) =>
      Object.entries(o || {}).sort((a, b) => (b[1].requests || 0) - (a[1].requests || 0));
    fillTable($("models"), byRequests(stats.by_model));
    const namespaces = stats.by_namespace;
    $("namespaces-section").hidden = !(scope === "all" && namespaces);
    if (namespaces) fillTable($("namespaces"), byRequests(namespaces));
  }

  function drawTop(top) {
    const tbody = $("top");
    tbody.replaceChildren();
    for (const entry of top.data || []) {
      const tr = document.createElement("tr");
      const short = entry.key.slice(0, 12) + "…";
      const keyCell = cell(short);
      keyCell.title = entry.key;
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Purge";
      button.dataset.testid = "purge-entry";
      button.addEventListener("click", () => {
        const body = { keys: [entry.key] };
        if (scope === "all" && entry.namespace) body.namespace = entry.namespace;
        purge(body);
      });
      const action = document.createElement("td");
      action.append(button);
      tr.append(
        keyCell,
        cell(entry.model),
        cell(fmt.int(entry.hits), entry.hits),
        cell(fmt.usd(entry.saved_usd), entry.saved_usd),
        action,
      );
      tbody.append(tr);
    }
  }

  function drawChart(series) {
    const points = series.points || [];
    const present = new Set();
    for (const p of points) for (const t of Object.keys(p.saved_usd_by_type || {})) present.add(t);
    const types = TYPE_ORDER.filter((t) => present.has(t)).concat(
      [...present].filter((t) => !TYPE_ORDER.includes(t)).sort(),
    );
    const xs = points.map((p) => p.t);
    // Stacked: each band is the running sum of the types below it.
    const running = points.map(() => 0);
    const bands = types.map((t) =>
      points.map((p, i) => {
        running[i] += (p.saved_usd_by_type || {})[t] || 0;
        return running[i];
      }),
    );
    const hitRate = points.map((p) => {
      const hits = Object.values(p.hits || {}).reduce((a, b) => a + b, 0);
      const looked = hits + (p.misses || 0);
      return looked ? (100 * hits) / looked : null;
    });
    const data = [xs, ...bands.slice().reverse(), hitRate];
    const signature = types.join(",");
    const container = $("chart");
    const width = Math.max(280, container.clientWidth || 600);
    if (chart && signature === chartTypes) {
      chart.setData(data);
      return;
    }
    if (chart) chart.destroy();
    chartTypes = signature;
    const typeSeries = types
      .slice()
      .reverse()
      .map((t) => ({
        label: t + " $",
        stroke: TYPE_COLORS[t] || "#555",
        fill: (TYPE_COLORS[t] || "#555") + "55",
        value: (u, v) => (v == null ? "-" : fmt.usd(v)),
      }));
    chart = new uPlot(
      {
        width,
        height: 260,
        series: [
          {},
          ...typeSeries,
          { label: "hit rate %", stroke: "#222", width: 2, scale: "%", value: (u, v) => (v == null ? "-" : v.toFixed(1) + "%") },
        ],
        scales: { "%": { range: [0, 100] } },
        axes: [
          {},
          { label: "USD saved (stacked)", size: 80, values: (u, vals) => vals.map((v) => fmt.usd(v)) },
          { side: 1, scale: "%", label: "hit rate %", grid: { show: false } }],
      },
      data,
      container,
    );
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const fleet = view() === "fleet" ? "scope=fleet" : "";
      const win = $("window").value;
      const [stats, series, top] = await Promise.all([
        api("/v1/cache/stats" + (fleet ? "?" + fleet : "")),
        api("/v1/cache/stats/series?window=" + encodeURIComponent(win) + (fleet ? "&" + fleet : "")),
        api("/v1/cache/top"),
      ]);
      scope = stats.scope || "namespace";
      drawTiles(stats);
      drawTables(stats);
      drawTop(top);
      drawChart(series);
      $("updated").textContent = new Date().toLocaleTimeString();
      showError("");
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
      document.body.dataset.ready = "1";
    } catch (e) {
      showError(String(e.message || e));
      if (e.status === 401) {
        sessionStorage.removeItem(KEY_STORAGE);
        showKeyForm();
        return;
      }
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  async function purge(body) {
    const result = $("purge-result");
    result.textContent = "Purging…";
    try {
      const answer = await api("/v1/cache/purge", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      result.textContent = "Purged " + answer.deleted + " entries (" + answer.id + ")";
      result.dataset.deleted = String(answer.deleted);
    } catch (e) {
      result.textContent = "Purge failed: " + (e.message || e);
    }
    refresh();
  }

  function showKeyForm() {
    $("main").hidden = true;
    $("key-form").hidden = false;
    $("key-input").focus();
  }

  function start() {
    $("key-form").hidden = true;
    $("main").hidden = false;
    refresh();
  }

  document.addEventListener("DOMContentLoaded", () => {
    takeKeyFromHash();
    $("key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(KEY_STORAGE, $("key-input").value.trim());
      $("key-input").value = "";
      start();
    });
    $("forget-key").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORAGE);
      clearTimeout(timer);
      showKeyForm();
    });
    $("purge-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const form = new FormData(ev.target);
      const body = {};
      const glob = String(form.get("custom_key") || "").trim();
      const model = String(form.get("model") || "").trim();
      const olderThan = String(form.get("older_than") || "").trim();
      if (glob) body.custom_keys = [glob];
      if (model) body.model = model;
      if (olderThan) body.older_than = olderThan;
      purge(body);
    });
    $("view").addEventListener("change", refresh);
    $("window").addEventListener("change", refresh);
    window.addEventListener("resize", () => {
      if (chart) chart.setSize({ width: Math.max(280, $("chart").clientWidth), height: 260 });
    });
    if (key() === null) showKeyForm();
    else start();
  });
})();
