"use strict";
// Builds the wsreplay report from the JSON in #wsreplay-data. Every untrusted string
// (frames, bodies, metadata) goes into the page as text nodes, never as HTML.
(() => {
  const data = JSON.parse(document.getElementById("wsreplay-data").textContent);
  const root = document.getElementById("report");
  const searchable = [];  // {row, text, tick}: what the filter box filters

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function add(parent, ...children) {
    for (const child of children) if (child) parent.append(child);
    return parent;
  }

  const seconds = (time) => `${time.toFixed(3)}s`;
  const plural = (count, noun) => `${count} ${noun}${count === 1 ? "" : "s"}`;

  function size(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1048576) return `${(bytes / 1024).toFixed(1)} KiB`;
    return `${(bytes / 1048576).toFixed(1)} MiB`;
  }

  const JSON_TOKEN = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;

  function highlightJson(text) {
    const fragment = document.createDocumentFragment();
    let last = 0;
    for (const match of text.matchAll(JSON_TOKEN)) {
      if (match.index > last) fragment.append(text.slice(last, match.index));
      if (match[1] !== undefined) {
        fragment.append(el("span", match[2] ? "j-key" : "j-str", match[1]));
        if (match[2]) fragment.append(match[2]);
      } else {
        fragment.append(el("span", match[3] ? "j-lit" : "j-num", match[0]));
      }
      last = match.index + match[0].length;
    }
    fragment.append(text.slice(last));
    return fragment;
  }

  function contentBlock(view) {
    if (!view || view.format === "empty") return el("div", "empty", "empty");
    const block = el("div");
    const pre = el("pre", `content ${view.format}`);
    if (view.format === "json") pre.append(highlightJson(view.content));
    else pre.textContent = view.content;
    add(block, pre);
    if (view.omitted > 0) {
      const unit = view.format === "binary" ? "bytes" : "characters";
      add(block, el("div", "omitted", `… ${view.omitted} more ${unit} not shown`));
    }
    return block;
  }

  function statusPill(lane) {
    const text = lane.status === null ? "no response" : `${lane.status}${lane.reason ? " " + lane.reason : ""}`;
    const failed = lane.kind === "http" ? lane.failure : !lane.accepted;
    return el("span", failed ? "status fail" : "status", text);
  }

  function describeClose(event) {
    const code = event.code === null ? "no close code" : event.code;
    return { code, rest: `${event.reason ? `“${event.reason}” ` : ""}by ${event.side || "unknown side"}` };
  }

  function markClass(event) {
    return event.mark ? ` mark-${event.mark}` : "";
  }

  function markFlag(event) {
    const words = { missing: "missing in B", extra: "new in B", changed: "changed" };
    return event.mark ? el("span", "markflag", words[event.mark]) : null;
  }

  function frameRow(event) {
    const row = el("div", `event frame ${event.side}${markClass(event)}`);
    const direction = event.side === "client" ? "client →" : "← server";
    const label = event.event ? el("span", "chip name", event.event) : el("span", "chip", event.format);
    const name = add(el("div", "event-name"), label, markFlag(event));
    const body = add(el("div", "body"), name, contentBlock(event));
    add(row, el("span", "time", seconds(event.time)), el("span", `dir ${event.side}`, direction),
      el("span", "size", size(event.size)), body);
    searchable.push({ row, text: `${event.event || ""}\n${event.content}`.toLowerCase(), tick: null });
    return row;
  }

  function closeRow(event) {
    const failure = event.failure ? " fail" : "";
    const row = el("div", `event close${failure}${markClass(event)}`);
    const words = describeClose(event);
    const text = add(el("div", "close-text"), el("span", "code", words.code), ` ${words.rest}`, markFlag(event));
    add(row, el("span", "time", seconds(event.time)), el("span", `dir close${failure}`, "close"),
      el("span", "size"), text);
    return row;
  }

  function errorRow(event) {
    const row = el("div", "event error");
    add(row, el("span", "time", seconds(event.time)), el("span", "dir error", "error"), el("span", "size"),
      el("div", "close-text", event.message));
    return row;
  }

  const ROWS = { frame: frameRow, close: closeRow, error: errorRow };

  function laneHeader(lane) {
    const header = el("header");
    const kind = lane.kind === "ws" ? (lane.accepted ? "WS" : "WS refused") : "HTTP";
    add(header, el("span", `kind ${lane.kind}`, kind), el("span", "target", `${lane.method} ${lane.target}`),
      el("span", "host", lane.host), statusPill(lane));
    if (lane.subprotocol) {
      const chip = el("span", "chip protocol", `subprotocol ${lane.subprotocol}`);
      chip.title = lane.subprotocol;
      add(header, chip);
    }
    for (const mark of lane.marks || []) add(header, el("span", "chip warn", mark.replace("_", " ")));
    const when = lane.kind === "http" ? `${seconds(lane.start)} · ${Math.round(lane.duration * 1000)} ms` : seconds(lane.start);
    add(header, el("span", "when", `#${lane.id} · ${when}`));
    return header;
  }

  function laneCard(lane) {
    const card = el("section", `card lane ${lane.kind}${lane.failure ? " failure" : ""}${lane.accepted === false ? " refused" : ""}`);
    card.dataset.laneId = String(lane.id);
    add(card, laneHeader(lane));
    if (lane.kind === "http") {
      add(card, add(el("div", "http-body"),
        add(el("div"), el("h3", null, "request body"), contentBlock(lane.request)),
        add(el("div"), el("h3", null, "response body"), lane.response ? contentBlock(lane.response) : el("div", "empty", "no response"))));
    } else if (!lane.accepted) {
      add(card, add(el("div", "refusal"), el("h3", null, `refused with ${lane.status} · response body`), contentBlock(lane.response)));
    }
    if (lane.events.length) {
      const events = el("div", "events");
      for (const event of lane.events) add(events, ROWS[event.type](event));
      add(card, events);
    } else if (lane.kind === "ws" && lane.accepted) {
      add(card, el("div", "refusal empty", "no frames, no close recorded"));
    }
    return card;
  }

  function metaList(meta) {
    const list = el("dl", "meta");
    const rows = [["cassette", meta.name], ["recorded by", meta.recorded_by], ["upstream", meta.upstream],
      ["mode", meta.mode], ["created", `${meta.created} (${meta.age})`]];
    for (const [key, value] of Object.entries(meta.metadata || {})) rows.push([key, typeof value === "string" ? value : JSON.stringify(value)]);
    for (const [name, value] of rows) add(list, el("dt", null, name), el("dd", null, value));
    return list;
  }

  function notesCard(notes) {
    if (!notes.length) return null;
    const card = add(el("section", "card notes"), el("h2", null, "Notes recorded in the cassette"));
    const list = el("ul");
    for (const note of notes) {
      for (const [kind, value] of Object.entries(note.data)) {
        if (kind === "redactions" && Array.isArray(value)) {
          const total = value.reduce((sum, item) => sum + (item.count || 0), 0);
          const item = add(el("li"), el("strong", null, `Redacted ${total} values: `));
          item.append(value.map((entry) => `${entry.kind} in ${entry.where} ×${entry.count}`).join(", ") || "nothing needed it");
          add(list, item);
        } else {
          add(list, add(el("li"), el("strong", null, `${kind}: `), typeof value === "string" ? value : JSON.stringify(value)));
        }
      }
    }
    return add(card, list);
  }

  function toolbar() {
    const bar = el("div", "toolbar");
    const input = el("input");
    input.id = "filter";
    input.type = "search";
    input.placeholder = "Filter frames by text (event name, field, value)…";
    input.autocomplete = "off";
    const count = el("span", "count");
    count.id = "filter-count";
    const legend = add(el("div", "legend"), legendItem("var(--client)", "client → server"),
      legendItem("var(--server)", "server → client"), legendItem("var(--fail)", "failure"));
    add(bar, input, count, legend);
    const update = () => applyFilter(input.value, count);
    input.addEventListener("input", update);
    return { bar, update };
  }

  function legendItem(color, text) {
    const swatch = el("i");
    swatch.style.background = color;
    return add(el("span"), swatch, text);
  }

  function applyFilter(query, count) {
    const needle = query.trim().toLowerCase();
    let shown = 0;
    for (const item of searchable) {
      const visible = !needle || item.text.includes(needle);
      item.row.classList.toggle("filtered-out", !visible);
      if (item.tick) item.tick.classList.toggle("filtered-out", !visible);
      shown += visible;
    }
    count.textContent = needle ? `${shown} of ${searchable.length} frames match` : `${searchable.length} frames`;
  }

  function niceStep(span) {
    const rough = span / 8;
    const power = 10 ** Math.floor(Math.log10(rough));
    return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= rough);
  }

  function timeline(lanes, end) {
    const first = lanes.length ? Math.min(...lanes.map((lane) => lane.start)) : 0;
    const step = niceStep(Math.max(end - first, 0.001));
    const origin = Math.floor(first / step) * step;
    const span = Math.max(end - origin, step);
    const at = (time) => `${Math.min(100, ((time - origin) / span) * 100)}%`;
    const length = (duration) => `${Math.min(100, (duration / span) * 100)}%`;
    const card = add(el("section", "card timeline"), el("h2", null, "Timeline"));
    const axis = el("div", "axis");
    for (let index = 0; origin + index * step <= end + 1e-9; index++) {
      const tick = origin + index * step;
      const label = el("span", null, `${+tick.toFixed(3)}s`);
      label.style.left = at(tick);
      add(axis, label);
    }
    add(card, axis);
    let frameIndex = 0;
    const frameTicks = searchable.filter((item) => item.tick === null);
    for (const lane of lanes) {
      const row = el("div", "row");
      const failed = lane.kind === "http" ? lane.failure : !lane.accepted;
      const label = add(el("div", "label"), el("b", null, `#${lane.id} ${lane.kind === "ws" ? "WS" : "HTTP"}`),
        `${lane.method} ${lane.target} `, el("span", failed ? "st fail" : "st", lane.status ?? "—"));
      label.title = `#${lane.id} ${lane.method} ${lane.target}`;
      const track = el("div", "track");
      const bar = el("div", `span ${lane.kind}${lane.failure && lane.kind === "http" ? " fail" : ""}${lane.accepted === false ? " refused" : ""}`);
      bar.style.left = at(lane.start);
      bar.style.width = `calc(${length(lane.end - lane.start)} + 3px)`;
      add(track, bar);
      for (const event of lane.events) {
        if (event.type === "frame") {
          const tick = el("div", `tick ${event.side}${event.mark ? " marked" : ""}`);
          tick.style.left = at(event.time);
          frameTicks[frameIndex++].tick = tick;
          add(track, tick);
        } else if (event.type === "close") {
          const diamond = el("div", `close-mark${event.failure ? " fail" : ""}`);
          diamond.style.left = at(event.time);
          diamond.title = `close ${event.code ?? "(no code)"} ${event.reason}`;
          add(track, diamond);
        }
      }
      row.addEventListener("click", () => document.querySelector(`[data-lane-id="${lane.id}"]`).scrollIntoView({ behavior: "smooth" }));
      add(card, add(row, label, track));
    }
    return card;
  }

  function counts(lanes) {
    let frames = 0, closes = 0, failures = 0;
    for (const lane of lanes) {
      frames += lane.events.filter((e) => e.type === "frame").length;
      closes += lane.events.filter((e) => e.type === "close").length;
      failures += lane.failure ? 1 : 0;
    }
    const websockets = lanes.filter((lane) => lane.kind === "ws").length;
    return add(el("div", "summary"), el("span", "chip", `${lanes.length - websockets} HTTP exchanges`),
      el("span", "chip", `${websockets} WebSockets`), el("span", "chip", `${frames} frames`),
      el("span", "chip", `${closes} closes`), el("span", failures ? "chip fail" : "chip ok", `${failures} failures`));
  }

  function masthead(title, sub) {
    return add(el("header", "masthead"), add(el("h1"), el("span", "brand", "wsreplay"), title), el("div", "sub", sub));
  }

  function showView() {
    const meta = data.cassette;
    add(root, masthead(meta.name, `recorded ${meta.age} · ${meta.created} · upstream ${meta.upstream}`));
    add(root, add(el("section", "card"), metaList(meta), counts(data.lanes)));
    if (data.truncated_at !== null) {
      add(root, el("section", "card notes", `The cassette ends with an incomplete record at byte ${data.truncated_at}; the records before it are shown.`));
    }
    for (const error of data.errors) add(root, el("section", "card notes", `${seconds(error.time)} connection error: ${error.message}`));
    add(root, notesCard(data.notes));
    const { bar, update } = toolbar();
    const cards = data.lanes.map(laneCard);
    add(root, bar, timeline(data.lanes, data.end));
    for (const card of cards) add(root, card);
    update();
  }

  function diffView() {
    add(root, masthead(`${data.a.name} → ${data.b.name}`, data.same ? "no differences" : plural(data.changes.length, "difference")));
    add(root, add(el("div", "meta-pair"),
      add(el("section", "card"), el("h2", null, "A (before)"), metaList(data.a)),
      add(el("section", "card"), el("h2", null, "B (after)"), metaList(data.b))));
    const verdict = add(el("section", "card"), el("div", `verdict ${data.same ? "same" : "different"}`,
      data.same ? "The recordings are the same." : `${plural(data.changes.length, "difference")}, as wsreplay diff reports them:`));
    if (!data.same) {
      const list = el("ul", "change-list");
      data.pairs.forEach((pair, index) => {
        for (const change of pair.changes) {
          const link = add(el("a"), el("code", null, change.where), ` ${change.message}`);
          link.href = `#pair-${index}`;
          add(list, add(el("li"), link));
        }
      });
      add(verdict, list);
    }
    const { bar, update } = toolbar();
    add(root, verdict, bar);
    data.pairs.forEach((pair, index) => {
      const section = el("details", `pair${pair.changes.length ? "" : " same"}`);
      section.id = `pair-${index}`;
      section.open = pair.changes.length > 0;
      const title = add(el("summary"), pair.where,
        pair.changes.length ? el("span", "chip fail", `${pair.changes.length} changed`) : el("span", "chip ok", "same"));
      const changes = el("ul", "changes");
      for (const change of pair.changes) add(changes, el("li", null, change.message));
      const sides = el("div", "sides");
      for (const [lane, side] of [[pair.a, "A"], [pair.b, "B"]]) {
        add(sides, lane ? laneCard(lane) : el("div", "absent", `not in ${side}`));
      }
      add(root, add(section, title, changes, sides));
    });
    update();
  }

  if (data.view === "diff") diffView();
  else showView();
})();
