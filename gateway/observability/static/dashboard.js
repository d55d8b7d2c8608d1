// The built-in operator dashboard: sign in with an operator key, then poll /admin/dashboard/data.
"use strict";

(() => {
  const KEY = "maas.operatorKey"; // sessionStorage only: the key never goes into a URL
  const POLL_MS = 3000;
  const $ = (id) => document.getElementById(id);
  const rate = { last: null, points: [] };
  let timer = null;

  async function fetchData(key) {
    const response = await fetch("/admin/dashboard/data", { headers: { Authorization: "Bearer " + key } });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : "HTTP " + response.status);
    return body;
  }

  function money(v) { return v.toFixed(6); }

  function fillTable(id, rows) {
    $(id).querySelector("tbody").replaceChildren(...rows.map((values) => {
      const tr = document.createElement("tr");
      for (const value of values) {
        const td = document.createElement("td");
        td.textContent = String(value); // names are data, never markup
        tr.appendChild(td);
      }
      return tr;
    }));
  }

  function render(data) {
    const minutes = data.series.map((p) => p.minute.slice(11));
    Charts.line($("chart-series"), minutes, [
      { name: "tokens", values: data.series.map((p) => p.tokens) },
      { name: "revenue", values: data.series.map((p) => p.revenue) },
    ]);
    const chips = Object.keys(data.cost_per_million_tokens_by_chip);
    Charts.bars($("chart-cost-chip"), chips, chips.map((c) => data.cost_per_million_tokens_by_chip[c]), money);
    const pools = Object.keys(data.margin_by_pool);
    Charts.bars($("chart-margin-pool"), pools, pools.map((p) => data.margin_by_pool[p].margin), money);
    const upools = Object.keys(data.utilization_by_pool);
    Charts.bars($("chart-util-pool"), upools, upools.map((p) => data.utilization_by_pool[p] * 100), (v) => v.toFixed(1) + "%");
    const spools = Object.keys(data.token_share_by_pool);
    Charts.bars($("chart-share-pool"), spools, spools.map((p) => data.token_share_by_pool[p] * 100), (v) => v.toFixed(1) + "%");
    const events = Object.keys(data.placement_events);
    Charts.bars($("chart-spills"), events, events.map((e) => data.placement_events[e]));
    Charts.bars($("chart-tenants"), data.top_tenants.map((t) => t.tenant), data.top_tenants.map((t) => t.tokens));
    fillTable("tenants", data.top_tenants.map((t) => [t.tenant, t.requests, t.tokens, money(t.revenue) + " " + t.currency]));
    fillTable("models", data.tokens_by_model.map((m) => [
      m.model, m.endpoint, m.requests, m.prompt_tokens, m.completion_tokens, money(m.revenue) + " " + m.currency,
    ]));

    const live = data.live;
    if (rate.last) {
      const dt = data.generated_at - rate.last.generated_at;
      const dn = live.requests_total - rate.last.requests_total;
      const dl = live.latency_sum_s - rate.last.latency_sum_s;
      const dc = live.latency_count - rate.last.latency_count;
      const rps = dt > 0 ? dn / dt : 0;
      rate.points.push({ t: new Date(data.generated_at * 1000).toISOString().slice(11, 19), rps, latency: dc > 0 ? (dl / dc) * 1000 : 0 });
      rate.points = rate.points.slice(-60);
      $("live-rate").textContent = rps.toFixed(2);
      $("live-latency").textContent = dc > 0 ? ((dl / dc) * 1000).toFixed(1) : "–";
    }
    rate.last = { generated_at: data.generated_at, ...live };
    $("live-inflight").textContent = String(live.in_flight);
    Charts.line($("chart-rate"), rate.points.map((p) => p.t), [
      { name: "requests/s", values: rate.points.map((p) => p.rps) },
      { name: "latency ms", values: rate.points.map((p) => p.latency) },
    ]);
    document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
  }

  async function poll() {
    const key = sessionStorage.getItem(KEY);
    if (!key) return;
    try {
      render(await fetchData(key));
      $("status").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (err) {
      $("status").textContent = "error: " + err.message;
    }
  }

  function show(signedIn) {
    $("login").hidden = signedIn;
    $("board").hidden = !signedIn;
    $("signout").hidden = !signedIn;
    if (timer) clearInterval(timer);
    timer = signedIn ? setInterval(poll, POLL_MS) : null;
    if (signedIn) poll();
    else $("status").textContent = "not signed in";
  }

  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("key").value.trim();
    try {
      await fetchData(key); // refused keys never reach the board
      sessionStorage.setItem(KEY, key);
      $("key").value = "";
      $("login-error").textContent = "";
      show(true);
    } catch (err) {
      $("login-error").textContent = err.message;
    }
  });
  $("signout").addEventListener("click", () => { sessionStorage.removeItem(KEY); show(false); });
  show(Boolean(sessionStorage.getItem(KEY)));
})();
