/* Switchyard dashboard: fills a server-rendered page from /dashboard/api.
 *
 * Every element with data-src is filled from that URL's JSON (each URL fetched once):
 *   [data-field]  one figure: a path into the answer ("rows.0.cost_usd"; "a+b" sums two fields),
 *                 formatted by data-fmt; the raw value goes to data-value
 *   table         rows into tbody, columns from data-columns (JSON), optionally data-filter
 *                 ("dimension=tier": rows whose field equals; "@routes": another array of the answer)
 *   [data-chart]  a uPlot chart: "stack" (series per group, stacked) or "lines" (one per data-y field)
 * When all are done <body data-ready="1"> (or data-ready="error"). No inline script, no eval: the
 * pages' CSP forbids both.
 */
(function () {
  "use strict";

  const PREFIX = "/dashboard";
  const body = document.body;
  const tz = body.dataset.tz || "UTC";
  const cache = new Map();
  const COLORS = ["#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#ec4899", "#84cc16",
    "#f97316", "#64748b"];

  function getJSON(url) {
    if (!cache.has(url)) {
      cache.set(url, fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } })
        .then(function (r) {
          if (r.status === 401) { window.location.assign(PREFIX + "/login"); }
          if (!r.ok) { throw new Error(url + ": HTTP " + r.status); }
          return r.json();
        }));
    }
    return cache.get(url);
  }

  function pick(obj, path) {
    if (path.indexOf("+") >= 0) {
      const parts = path.split("+");
      const base = parts[0].split(".").slice(0, -1).join(".");
      let sum = 0;
      parts.forEach(function (p, i) {
        const full = i === 0 ? p : (base ? base + "." + p : p);
        sum += Number(pick(obj, full) || 0);
      });
      return sum;
    }
    return path.split(".").reduce(function (o, k) { return o == null ? undefined : o[k]; }, obj);
  }

  function fmt(value, kind, none) {
    if (value === null || value === undefined || value === "") { return none !== undefined ? none : "-"; }
    const n = Number(value);
    switch (kind) {
      case "usd": {
        const abs = Math.abs(n);
        const digits = abs === 0 ? 2 : abs < 0.01 ? 6 : abs < 1 ? 4 : 2;
        return "$" + n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: digits });
      }
      case "int": return Math.round(n).toLocaleString("en-US");
      case "num": return n.toLocaleString("en-US", { maximumFractionDigits: 3 });
      case "ms": return n >= 1000 ? (n / 1000).toLocaleString("en-US", { maximumFractionDigits: 2 }) + " s"
        : n.toLocaleString("en-US", { maximumFractionDigits: 1 }) + " ms";
      case "pct": return (n * 100).toLocaleString("en-US", { maximumFractionDigits: 1 }) + "%";
      case "list": return Array.isArray(value) ? value.join(" \u2192 ") : String(value);
      case "binding": return value === "team" ? "the team" : value === "key" ? "its own" : "no";
      case "time": return String(value).replace("T", " ").replace(/\.\d+/, "");
      default: return String(value);
    }
  }

  function commonQuery() {
    const params = new URLSearchParams(window.location.search);
    const keep = new URLSearchParams();
    ["start", "end", "tz"].forEach(function (k) { if (params.get(k)) { keep.set(k, params.get(k)); } });
    const q = keep.toString();
    return q ? "?" + q : "";
  }

  function fillField(el, json) {
    const value = pick(json, el.dataset.field);
    el.dataset.value = value === null || value === undefined ? "" : String(value);
    el.textContent = fmt(value, el.dataset.fmt, el.dataset.none);
  }

  function linkFor(col, row) {
    if (!col.link) { return null; }
    if (col.link_if) {
      const kv = col.link_if.split("=");
      if (String(row[kv[0]]) !== kv[1]) { return null; }
    }
    let missing = false;
    const path = col.link.replace(/\{(\w+)\}/g, function (_, k) {
      if (row[k] === null || row[k] === undefined || row[k] === "") { missing = true; }
      return encodeURIComponent(row[k]);
    });
    return missing ? null : PREFIX + path + commonQuery();
  }

  function cell(col, row) {
    const td = document.createElement("td");
    let value = row[col.f];
    if (col.map) { value = value == null ? null : (col.map[value] || value); }
    td.className = col.fmt === "bar" ? "barcell" : col.fmt || "text";
    if (col.fmt === "bar") {
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = Math.max(0, Math.min(100, Number(value) * 100)) + "%";
      td.appendChild(bar);
      return td;
    }
    const text = fmt(value, col.fmt, col.none);
    const href = linkFor(col, row);
    if (href) {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      td.appendChild(a);
    } else {
      td.textContent = text;
    }
    td.dataset.value = value === null || value === undefined ? "" : String(value);
    return td;
  }

  function rowsOf(table, json) {
    const filter = table.dataset.filter;
    if (filter && filter[0] === "@") { return json[filter.slice(1)] || []; }
    let rows = json.rows || [];
    if (filter) {
      const kv = filter.split("=");
      rows = rows.filter(function (r) { return String(r[kv[0]]) === kv[1]; });
    }
    return rows;
  }

  function fillTable(table, json, append) {
    const columns = JSON.parse(table.dataset.columns);
    const tbody = table.tBodies[0];
    if (!append) { tbody.textContent = ""; }
    const rows = rowsOf(table, json);
    rows.forEach(function (row) {
      const tr = document.createElement("tr");
      tr.setAttribute("data-testid", table.dataset.testid + "-row");
      columns.forEach(function (col) { tr.appendChild(cell(col, row)); });
      tbody.appendChild(tr);
    });
    if (!append && rows.length === 0) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = columns.length;
      td.className = "empty";
      td.textContent = "Nothing in this range";
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
  }

  function pagedTable(table) {
    const more = table.parentElement.querySelector("button.more");
    let src = table.dataset.src;
    function load(cursor, append) {
      const url = cursor ? src + "&cursor=" + encodeURIComponent(cursor) : src;
      return getJSON(url).then(function (json) {
        fillTable(table, json, append);
        if (more) {
          more.hidden = !json.next_cursor;
          more.onclick = function () { more.disabled = true; load(json.next_cursor, true).then(function () { more.disabled = false; }); };
        }
      });
    }
    return load(null, false);
  }

  // -- charts ---------------------------------------------------------------------------------------

  function chartSize(el) {
    return { width: Math.max(280, el.clientWidth || 600), height: 240 };
  }

  // Days are categories (one bar each, labelled in the reporting zone); hours a time axis in that zone.
  function xAxis(json) {
    if (json.bucket !== "day") {
      return {
        x: json.axis,
        opts: { tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), tz === "UTC" ? "Etc/UTC" : tz); } },
      };
    }
    const day = new Intl.DateTimeFormat("en-US", { timeZone: tz, month: "short", day: "numeric" });
    return categories(json.axis.map(function (ts) { return day.format(new Date(ts * 1e3)); }), "Day");
  }

  function categories(labels, name) {
    const n = labels.length;
    return {
      x: labels.map(function (_, i) { return i; }),
      opts: {
        scales: { x: { time: false, range: function () { return [-0.5, n - 0.5]; } } },
        axes: [{ incrs: [1, 2, 5, 10, 20, 50, 100], space: 36,
          values: function (u, ticks) { return ticks.map(function (t) { return Number.isInteger(t) ? (labels[t] || "") : ""; }); } }],
        xName: name,
        xValue: function (u, v) { return v == null ? "-" : (labels[v] || "-"); },
      },
    };
  }

  function build(el, xa, series, data, yFmt) {
    series[0] = xa.opts.xValue ? { label: xa.opts.xName, value: xa.opts.xValue } : {};
    const base = { series: series, tzDate: xa.opts.tzDate };
    const scales = Object.assign({ y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
      xa.opts.scales || {});
    const xAxisOpts = (xa.opts.axes || [{}])[0];
    const opts = Object.assign(chartSize(el), base, {
      scales: scales,
      axes: [xAxisOpts, { size: 70, values: function (u, ticks) {
        return ticks.map(function (t) { return yFmt === "int" && !Number.isInteger(t) ? "" : fmt(t, yFmt); });
      } }],
    });
    if (!opts.tzDate) { delete opts.tzDate; }
    return new uPlot(opts, [xa.x].concat(data), el);
  }

  function drawStack(el, json, field) {
    const axis = json.axis;
    const index = new Map(axis.map(function (t, i) { return [t, i]; }));
    const groups = new Map();
    json.rows.forEach(function (r) {
      if (!groups.has(r.group)) { groups.set(r.group, { label: r.label || r.group || "(none)", values: axis.map(function () { return 0; }) }); }
      const i = index.get(r.ts);
      if (i !== undefined) { groups.get(r.group).values[i] += Number(r[field]); }
    });
    // Largest total at the bottom of the stack; drawn top-down so each band covers the one below.
    const list = Array.from(groups.values()).sort(function (a, b) {
      return b.values.reduce(function (s, v) { return s + v; }, 0) - a.values.reduce(function (s, v) { return s + v; }, 0);
    });
    const cumulative = [];
    let running = axis.map(function () { return 0; });
    list.forEach(function (g) {
      running = running.map(function (v, i) { return v + g.values[i]; });
      cumulative.push(running);
    });
    const series = [{}];
    const data = [];
    for (let k = list.length - 1; k >= 0; k--) {
      const color = COLORS[k % COLORS.length];
      const raw = list[k].values;
      series.push({
        label: list[k].label,
        stroke: color,
        fill: color + "b3",
        paths: uPlot.paths.bars({ size: [0.8, 48] }),
        value: function (u, v, si, di) { return di == null ? "-" : fmt(raw[di], "usd"); },
      });
      data.push(cumulative[k]);
    }
    if (list.length === 0) { series.push({ label: "nothing in this range" }); data.push(axis.map(function () { return 0; })); }
    return build(el, xAxis(json), series, data, "usd");
  }

  function drawLines(el, json, fields) {
    const axis = json.axis;
    const index = new Map(axis.map(function (t, i) { return [t, i]; }));
    const data = [];
    const series = [{}];
    const bars = json.bucket === "day";
    fields.forEach(function (f, k) {
      const values = axis.map(function () { return 0; });
      json.rows.forEach(function (r) { const i = index.get(r.ts); if (i !== undefined) { values[i] += Number(r[f]); } });
      data.push(values);
      series.push({ label: f.replace(/_/g, " "), stroke: COLORS[k % COLORS.length], width: 2,
        points: { show: bars }, value: function (u, v) { return v == null ? "-" : fmt(v, "int"); } });
    });
    return build(el, xAxis(json), series, data, "int");
  }

  function drawHist(el, json) {
    const rows = rowsOf(el, json);
    const series = [{}, { label: el.dataset.y, stroke: COLORS[0], fill: COLORS[0] + "b3",
      paths: uPlot.paths.bars({ size: [0.85, 40] }), value: function (u, v) { return v == null ? "-" : fmt(v, "int"); } }];
    // "0.25-0.30" is labelled by its lower edge.
    const xa = categories(rows.map(function (r) { return String(r[el.dataset.x]).split("-")[0]; }), el.dataset.x);
    return build(el, xa, series, [rows.map(function (r) { return Number(r[el.dataset.y]); })], "int");
  }

  function drawChart(el, json) {
    el.textContent = "";
    const kind = el.dataset.chart;
    const plot = kind === "stack" ? drawStack(el, json, el.dataset.y)
      : kind === "hist" ? drawHist(el, json) : drawLines(el, json, el.dataset.y.split(","));
    window.addEventListener("resize", function () { plot.setSize(chartSize(el)); });
  }

  // -- the page -------------------------------------------------------------------------------------

  function fail(el, err) {
    el.classList.add("failed");
    el.setAttribute("title", String(err));
    if (el.tagName !== "TABLE") { el.textContent = "unavailable"; }
    throw err;
  }

  function run() {
    const jobs = [];
    document.querySelectorAll("[data-src]").forEach(function (el) {
      let job;
      if (el.tagName === "TABLE" && el.dataset.pages) {
        job = pagedTable(el);
      } else {
        job = getJSON(el.dataset.src).then(function (json) {
          if (el.tagName === "TABLE") { fillTable(el, json, false); }
          else if (el.dataset.chart) { drawChart(el, json); }
          else { fillField(el, json); }
        });
      }
      jobs.push(job.catch(function (err) { fail(el, err); }));
    });
    Promise.all(jobs).then(function () { body.dataset.ready = "1"; }, function () { body.dataset.ready = "error"; });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", run); } else { run(); }
})();
