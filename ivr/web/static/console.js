// The console's only script: live overview by server-sent events (polling every 2 s if they
// fail), the campaign switcher, confirmations. No library, no CDN; textContent only.
"use strict";
(function () {
  const body = document.body;
  const campaign = body.dataset.campaign;
  const section = body.dataset.section;

  // The campaign switcher changes page on its button only: a change listener took a keyboard
  // user arrowing through a closed select to the first campaign passed (WCAG 3.2.2).

  // The session ends 12 hours after login (auth.py): said 5 minutes before, in an alert,
  // so that what an operator is typing is not lost to a form sent after it (WCAG 2.2.1).
  // The page gives the seconds left, not an instant: the browser's clock may differ.
  const ending = document.getElementById("session-ending");
  const left = Number(body.dataset.sessionLeft);
  if (ending && body.dataset.sessionLeft !== undefined && !isNaN(left)) {
    setTimeout(function () { ending.hidden = false; }, Math.max(0, left - 300) * 1000);
  }

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.dataset.confirm)) { ev.preventDefault(); }
    });
  });

  // Only what changed is written: a screen reader keeps its place in a page redrawn every
  // second, and a live region (aria-live) speaks a change, not every update.
  function put(el, text) {
    if (el && el.textContent !== text) { el.textContent = text; }
  }

  // The program's English detail inside a French text in <span lang="en">, as the pages'
  // `en` filter writes it (english_parts.py): a French voice does not read it as French.
  const MARK = /[Dd]étail en anglais\s*:\s*/g;
  function closing(text, start, end) {
    let depth = 1;
    for (let i = start; i < end; i++) {
      depth += text[i] === "(" ? 1 : text[i] === ")" ? -1 : 0;
      if (depth === 0) { return i; }
    }
    return end;
  }
  function englishParts(text) {
    const marks = Array.from(text.matchAll(MARK)), parts = [];
    let pos = 0;
    marks.forEach(function (m, i) {
      const after = m.index + m[0].length;
      let end = i + 1 < marks.length ? marks[i + 1].index : text.length;
      if (m.index > 0 && text[m.index - 1] === "(") { end = closing(text, after, end); }
      parts.push([text.slice(pos, after), false], [text.slice(after, end), true]);
      pos = end;
    });
    parts.push([text.slice(pos), false]);
    return parts.filter(function (p) { return p[0]; });
  }
  function putMarked(el, text) {
    if (!el || el.textContent === text) { return; }
    el.replaceChildren.apply(el, englishParts(text).map(function (p) {
      if (!p[1]) { return document.createTextNode(p[0]); }
      const span = document.createElement("span");
      span.lang = "en";
      span.textContent = p[0];
      return span;
    }));
  }

  function setText(id, value) {
    put(document.getElementById(id),
        (value === null || value === undefined || value === "") ? "—" : String(value));
  }

  // One decimal as the page's `dec` filter writes it (display.decimal): 12,5 in French
  function dec(value) {
    if (value === null || value === undefined || value === "") { return "—"; }
    const text = Number(value).toFixed(1);
    return document.documentElement.lang === "fr" ? text.replace(".", ",") : text;
  }

  // A count as the page's `num` filter writes it (display.whole): 12 345 in French (a narrow
  // no-break space), 12,345 in English; what is not a whole number, as it is.
  function num(value) {
    if (value === null || value === undefined || value === "") { return "—"; }
    if (typeof value !== "number" || !Number.isInteger(value)) { return String(value); }
    const sep = document.documentElement.lang === "fr" ? "\u202f" : ",";
    return (value < 0 ? "-" : "") + String(Math.abs(value)).replace(/\B(?=(\d{3})+(?!\d))/g, sep);
  }

  function eta(seconds) {
    if (seconds === null || seconds === undefined) { return "—"; }
    const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return h + ":" + String(m).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
  }

  // An instant (the API's ISO UTC) in the campaign's zone (body's data-tz: the config's
  // schedule.timezone), exactly as the pages' `local` filter writes it (ivr/web/display.py):
  // "01/12/2026 10:30 (Europe/Paris)". The API keeps UTC; only what is shown changes.
  function localTime(iso, named, seconds) {
    if (!iso) { return ""; }
    const zone = body.dataset.tz, at = new Date(iso);
    if (!zone || isNaN(at.getTime())) { return String(iso); }
    let parts;
    try {
      parts = {};
      new Intl.DateTimeFormat("en-GB", {timeZone: zone, year: "numeric", month: "2-digit",
        day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
        hourCycle: "h23"}).formatToParts(at).forEach(function (p) { parts[p.type] = p.value; });
    } catch (e) {
      return String(iso);  // a zone this browser does not know: the instant as given
    }
    const text = parts.day + "/" + parts.month + "/" + parts.year + " " + parts.hour + ":" +
      parts.minute + (seconds ? ":" + parts.second : "");
    return named ? text + " (" + zone + ")" : text;
  }

  function row(cells) {
    const tr = document.createElement("tr");
    cells.forEach(function (c) {
      const td = document.createElement("td");
      td.textContent = (c === null || c === undefined) ? "" : String(c);
      tr.appendChild(td);
    });
    return tr;
  }

  // What a table's rows say (each cell's text and title), to compare the rows drawn with new ones
  function rowsText(trs) {
    return JSON.stringify(Array.prototype.map.call(trs, function (tr) {
      return Array.prototype.map.call(tr.children, function (td) { return [td.textContent, td.title]; });
    }));
  }

  function fillTable(id, rows) {
    const tbody = document.querySelector("#" + id + " tbody");
    // unchanged (the server's rows included): the rows a reader is on stay
    if (tbody && rowsText(tbody.children) !== rowsText(rows)) { tbody.replaceChildren.apply(tbody, rows); }
  }

  // The page's words for a table's codes (its data-words: outcome code -> words), as the
  // server drew them; a code the page has no words for, as it is.
  function wordsOf(id) {
    const table = document.getElementById(id);
    return table && table.dataset.words ? JSON.parse(table.dataset.words) : {};
  }

  let lastChart = "";  // the chart drawn last: redrawn only when it changed

  function show(o) {
    const counts = document.querySelector("#counts tbody");
    const outcomes = wordsOf("counts");
    Object.keys(o.counts).forEach(function (name) {
      let cell = document.querySelector('#counts [data-outcome="' + CSS.escape(name) + '"]');
      if (!cell && counts) {
        // A row the page did not draw (a run's first outcomes): its words, the code beside.
        const tr = row([outcomes[name] || name, ""]);
        if (outcomes[name]) {
          const code = document.createElement("code");
          code.textContent = name;
          tr.children[0].appendChild(document.createTextNode(" "));
          tr.children[0].appendChild(code);
        }
        tr.children[0].title = name;
        cell = tr.lastChild;
        cell.dataset.outcome = name;
        counts.appendChild(tr);
      }
      put(cell, num(o.counts[name]));
    });
    setText("in-flight", num(o.in_flight));
    setText("cap", num(o.cap));
    setText("rate", dec(o.calls_per_minute));
    setText("pct", dec(o.percent_complete));
    setText("eta", eta(o.eta_s));
    const desired = document.getElementById("desired");  // its words in the page's language
    const states = desired && desired.dataset.states ? JSON.parse(desired.dataset.states) : {};
    setText("desired", states[o.desired] || o.desired);
    if (desired) { desired.dataset.state = o.desired || ""; }  // the raw state, any language
    const why = document.getElementById("why-waiting");
    putMarked(why, o.why_waiting || "");
    setText("next-allowed", localTime(o.next_allowed, true, false));
    const next = document.getElementById("next-allowed");
    if (next) { next.dataset.at = o.next_allowed || ""; }  // the instant itself, in UTC
    const none = document.getElementById("no-controller");
    if (none && none.hidden !== (o.controllers.length > 0)) { none.hidden = !none.hidden; }
    const words = (document.getElementById("nodes") || body).dataset;  // the page's language
    fillTable("nodes", o.nodes.map(function (n) {
      return row([n.name, num(n.in_flight), num(n.cap || "—"),
                  n.holding || (n.up ? words.up || "up" : words.down || "down")]);
    }));
    const said = wordsOf("recent-calls");
    fillTable("recent-calls", o.recent_calls.map(function (c) {
      const tr = row([c.id, c.number, c.attempt, c.node, localTime(c.started_at, false, true),
                      localTime(c.ended_at, false, true),
                      c.outcome ? said[c.outcome] || c.outcome : "…", c.keys]);
      if (c.outcome) { tr.children[6].title = c.outcome; }
      return tr;
    }));
    const chart = document.getElementById("chart");
    if (chart && o.chart_svg && o.chart_svg !== lastChart) {
      lastChart = o.chart_svg;
      // The SVG is the server's own rendering (every text escaped there), parsed as SVG.
      const doc = new DOMParser().parseFromString(o.chart_svg, "image/svg+xml");
      chart.replaceChildren(document.importNode(doc.documentElement, true));
    }
    body.dataset.updated = o.at;
  }

  if (!campaign || (section !== "overview" && section !== "run")) { return; }
  const base = "/api/campaigns/" + encodeURIComponent(campaign);
  // Why nobody is called and the chart's titles in the page's language (the rest of the
  // overview is the API's own: codes, ISO UTC times).
  const langQuery = "?lang=" + encodeURIComponent(document.documentElement.lang || "en");
  let polling = null;
  function poll() {
    fetch(base + "/overview" + langQuery, {credentials: "same-origin"})
      .then(function (r) {
        // The session ended (logout elsewhere, 12 hours): the page again, which is the login
        // and then this page; not a page that silently stops updating.
        if (r.status === 401) { location.reload(); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (o) { if (o) { show(o); } })
      .catch(function () {});
  }
  if (window.EventSource) {
    const source = new EventSource(base + "/events" + langQuery);
    source.onmessage = function (ev) { show(JSON.parse(ev.data)); };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED && !polling) { poll(); polling = setInterval(poll, 2000); }
    };
  } else {
    polling = setInterval(poll, 2000);
  }
})();
