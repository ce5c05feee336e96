# ruff: noqa: E501  (an embedded HTML document)
"""The labelling page (one self-contained HTML document; no external resources)."""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>adakit · labelling</title>
<link rel="icon" href="data:,">
<style>
 :root { --fg:#1d2330; --mute:#6b7385; --line:#dfe3ea; --acc:#2f6fed; --ok:#1a8f4a; --warn:#b26b00; --bad:#c62f2f; }
 * { box-sizing: border-box; }
 body { margin:0; font:15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg); background:#f6f7f9; }
 header { display:flex; gap:16px; align-items:center; padding:10px 18px; background:#fff; border-bottom:1px solid var(--line); }
 header b { font-size:17px; } #run { color:var(--mute); }
 #progress { margin-left:auto; font-weight:600; } #bar { width:180px; height:8px; background:var(--line); border-radius:4px; overflow:hidden; }
 #bar div { height:100%; background:var(--ok); width:0; transition:width .2s; }
 main { display:grid; grid-template-columns: minmax(300px, 1fr) 380px; gap:18px; padding:18px; }
 #media { background:#fff; border:1px solid var(--line); border-radius:8px; min-height:360px; display:flex; align-items:center; justify-content:center; padding:12px; }
 #img { height:min(60vh, 560px); max-width:100%; object-fit:contain; display:none; }
 #row { font:14px ui-monospace, monospace; color:var(--mute); display:none; text-align:center; }
 #meta { color:var(--mute); font-size:13px; margin-top:8px; word-break:break-all; }
 #near { display:none; margin-top:10px; } #near .nb { display:flex; gap:10px; flex-wrap:wrap; }
 #near figure { margin:0; width:130px; background:#fff; border:1px solid var(--line); border-radius:6px; padding:6px; font-size:12px; text-align:center; overflow-wrap:anywhere; }
 #near img { width:116px; height:116px; object-fit:contain; display:block; margin:0 auto 4px; }
 #near figcaption b { display:block; font-size:13px; } #near figcaption span { color:var(--mute); }
 aside { background:#fff; border:1px solid var(--line); border-radius:8px; padding:14px; }
 h3 { margin:14px 0 6px; font-size:13px; text-transform:uppercase; letter-spacing:.04em; color:var(--mute); }
 h3:first-of-type { margin-top:4px; }
 .cls { display:flex; width:100%; align-items:center; gap:8px; margin:3px 0; padding:6px 8px; border:1px solid var(--line); border-radius:6px; background:#fff; cursor:pointer; font:inherit; text-align:left; }
 .cls:hover { border-color:var(--acc); } .cls.current { background:#e8f5ec; border-color:var(--ok); font-weight:600; }
 .key { display:inline-block; min-width:20px; text-align:center; font:12px ui-monospace, monospace; background:#eef1f6; border-radius:4px; padding:1px 4px; color:var(--mute); }
 .p { margin-left:auto; color:var(--mute); font-size:12px; }
 #classes { max-height:30vh; overflow:auto; }
 #filter { width:100%; padding:6px 8px; border:1px solid var(--line); border-radius:6px; font:inherit; margin-bottom:4px; }
 #status { min-height:40px; padding:8px 10px; border-radius:6px; margin-bottom:6px; font-size:14px; }
 #status.ok { background:#e8f5ec; color:var(--ok); } #status.conflict { background:#fff4e0; color:var(--warn); }
 #status.error { background:#fdeaea; color:var(--bad); } #status.info { background:#eef3fd; color:var(--acc); }
 .help { color:var(--mute); font-size:12px; margin:12px 0 0; }
 nav { display:flex; flex-wrap:wrap; gap:8px; margin-top:10px; } nav button { flex:1; padding:6px; border:1px solid var(--line); background:#fff; border-radius:6px; cursor:pointer; }
</style></head>
<body>
<header><b>adakit</b><span id="run"></span><span id="progress">loading…</span><div id="bar"><div></div></div></header>
<main>
 <section>
  <div id="media"><img id="img" alt="queried sample"><div id="row"></div></div>
  <div id="meta"></div>
  <div id="near"><h3>Nearest labelled samples</h3><div class="nb"></div></div>
 </section>
 <aside>
  <div id="status" class="info" role="status" aria-live="polite"></div>
  <h3>Model suggestions</h3><div id="sugg"></div>
  <h3>All classes</h3>
  <input id="filter" placeholder="type to filter · Enter picks the first" autocomplete="off">
  <div id="classes"></div>
  <nav><button id="prev" title="previous (←)">← previous</button><button id="undo" title="undo (u)">undo (u)</button><button id="drop" title="nobody can tell its class: close the query without a label (x)">can't label (x)</button><button id="next" title="next (→)">next →</button></nav>
  <p class="help">keys: <span class="key">1</span>–<span class="key">9</span> pick · <span class="key">←</span> <span class="key">→</span> navigate ·
   <span class="key">u</span> undo (correct your last answer) · <span class="key">x</span> can't label ·
   <span class="key">/</span> filter classes</p>
 </aside>
</main>
<script>
"use strict";
const TOKEN = new URLSearchParams(location.search).get("token") || "";
let S = {classes: [], items: [], done: 0, total: 0, run: ""}, idx = 0, hist = [], busy = false, lost = false, undoing = null;
const $ = (id) => document.getElementById(id);
const esc = (t) => String(t).replace(/[&<>"']/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));

async function api(path, opts = {}) {
  opts.headers = Object.assign({"X-Adakit-Token": TOKEN, "Content-Type": "application/json"}, opts.headers || {});
  let r;
  try { r = await fetch(path, opts); } catch (e) { lost = true; return [0, {error: "server unreachable: " + e}]; }
  let body = {};
  try { body = await r.json(); } catch (e) {}
  return [r.status, body];
}
function status(kind, text) { const s = $("status"); s.className = kind; s.textContent = text; }
const DROPPED = -1;  // the ledger's label of a query nobody can label
function name(c) { return c === null || c === undefined ? "" : c === DROPPED ? "can't label" : S.classes[c]; }
function shortcuts(it) {
  const order = it.suggestions.map((s) => s.label);
  for (let c = 0; c < S.classes.length && order.length < 9; c++) if (!order.includes(c)) order.push(c);
  return order.slice(0, 9);
}
function button(c, key, prob, it) {
  const b = document.createElement("button");
  b.className = "cls" + (it.label === c ? " current" : "");
  b.dataset.label = c;
  b.innerHTML = (key ? `<span class="key">${key}</span>` : `<span class="key"> </span>`) + esc(S.classes[c]) +
    (prob !== null && prob !== undefined ? `<span class="p">${(100 * prob).toFixed(0)}%</span>` : "");
  b.onclick = () => { b.blur(); pick(c); };
  return b;
}
function renderClasses(it) {
  const keys = shortcuts(it), f = $("filter").value.trim().toLowerCase(), box = $("classes");
  box.innerHTML = "";
  S.classes.forEach((n, c) => {
    if (f && !n.toLowerCase().includes(f)) return;
    const k = keys.indexOf(c);
    box.appendChild(button(c, k >= 0 && k >= it.suggestions.length ? k + 1 : null, null, it));
  });
}
function renderNeighbours(it) {
  const nb = it.neighbours || [], box = $("near").querySelector(".nb");
  box.innerHTML = "";
  $("near").style.display = nb.length ? "block" : "none";
  nb.forEach((n) => {
    const f = document.createElement("figure");
    f.className = "neighbour";
    f.innerHTML = (n.image ? `<img src="${esc(n.image)}" alt="${esc(n.name)}">` : "") +
      `<figcaption><b>${esc(n.name)}</b><span>${esc(n.sample_id)} · cos ${n.similarity.toFixed(2)}</span></figcaption>`;
    box.appendChild(f);
  });
}
function render() {
  const n = S.items.length;
  $("run").textContent = S.run;
  const dropped = S.items.filter((i) => i.label === DROPPED).length;
  $("progress").textContent = `${S.done} of ${S.total} answered` + (dropped ? ` (${dropped} dropped)` : "") +
    (n ? ` · item ${idx + 1}/${n}` : "");
  $("bar").firstElementChild.style.width = S.total ? (100 * S.done / S.total) + "%" : "0";
  const it = S.items[idx];
  if (!it) {
    $("img").style.display = "none"; $("row").style.display = "block";
    $("row").textContent = "No open queries. Create some with: adakit query RUN_DIR --budget N";
    $("sugg").innerHTML = ""; $("classes").innerHTML = ""; $("meta").textContent = ""; $("near").style.display = "none";
    return;
  }
  if (it.image) {
    const img = $("img");
    if (img.dataset.id !== it.sample_id) { img.src = it.image; img.dataset.id = it.sample_id; }
    img.style.display = "block"; $("row").style.display = "none";
  } else {
    $("img").style.display = "none"; $("row").style.display = "block";
    $("row").textContent = "feature row " + it.locator;
  }
  $("media").style.minHeight = it.image ? "" : "120px";
  renderNeighbours(it);
  $("meta").textContent = (it.locator !== it.sample_id ? `${it.locator} · ` : "") + `${it.sample_id} · round ${it.round} · score ${it.score === null ? "–" : it.score.toPrecision(3)}` +
    (it.label === DROPPED ? " · dropped: nobody can label it" : it.label !== null ? ` · labelled “${name(it.label)}”` : " · not labelled yet");
  const sg = $("sugg"); sg.innerHTML = "";
  it.suggestions.forEach((s, k) => sg.appendChild(button(s.label, k + 1, s.p, it)));
  if (!it.suggestions.length) sg.textContent = "(no model suggestion)";
  renderClasses(it);
}
function nextOpen(from) {
  const n = S.items.length;
  for (let k = 1; k <= n; k++) { const j = (from + k) % n; if (S.items[j].label === null) return j; }
  return -1;
}
async function pick(label) {
  const it = S.items[idx];
  if (!it || busy) return;
  busy = true;
  const at = idx, replaces = it.label;
  const [st, b] = await api("/api/answer", {method: "POST",
    body: JSON.stringify({sample_id: it.sample_id, label: label, replaces: replaces})});
  busy = false;
  if (st === 200) {
    lost = false;
    it.label = b.label; S.done = b.done; S.total = b.total;
    if (b.outcome !== "same") hist.push(it.sample_id);
    const verb = {new: "Saved", same: "Already saved", corrected: "Corrected"}[b.outcome] || "Saved";
    const j = nextOpen(at);
    // the server's count decides: other tabs or people may have answered items this tab still shows open
    if (b.done >= b.total) status("ok", `${verb}: “${name(b.label)}”. ${finished()}`);
    else { if (j >= 0) idx = j; else refresh(false); status("ok", `${verb}: “${name(b.label)}”. Next.`); }
    $("filter").value = "";
  } else if (st === 409) {
    it.label = b.current;
    status("conflict", (b.current === null || b.current === undefined
      ? "Conflict: this sample has no label yet, so there is nothing to correct. "
      : `Conflict: this sample was already labelled “${name(b.current)}” (another tab or person). `) +
      "Nothing changed. Pick a class again to correct it, or → to move on.");
    refresh(true);  // another tab or person is answering: its answers and the count, without leaving this item
  } else if (st === 503) {
    status("error", `Not saved, try again in a moment: ${b.error || "the ledger is busy"}`);
  } else {
    status("error", `Not saved (${st || "no answer"}): ${b.error || "unknown error"}`);
  }
  render();
}
function finished() { return `All ${S.total} answered — train on them with: ${S.resume || "adakit resume RUN_DIR"}`; }
function go(d) {
  const n = S.items.length;
  if (!n) return;
  idx = (idx + d + n) % n;
  // an undo's "pick the right class for X" named the item left behind
  if (S.items[idx].sample_id !== undoing) { undoing = null; if ($("status").textContent.startsWith("Undo:")) status("info", ""); }
  render();
}
function undo() {
  // the history holds sample ids: a refresh replaces the list of open queries (a new round), so positions in
  // it would name other samples
  let k = -1;
  while (hist.length && k < 0) { const sid = hist.pop(); k = S.items.findIndex((i) => i.sample_id === sid); }
  if (k < 0) { status("info", "Nothing to undo in this tab."); return; }
  idx = k; undoing = S.items[k].sample_id; render();
  status("info", `Undo: pick the right class for ${S.items[idx].sample_id} (recorded as a correction of “${name(S.items[idx].label)}”).`);
}
async function refresh(keepIdx) {
  const [st, b] = await api("/api/state");
  if (st !== 200) { status("error", b.error || ("cannot load the queries (HTTP " + st + ")")); return false; }
  if (lost) {  // (otherwise "server unreachable" would stay on the page)
    lost = false;
    status("info", "The server answers again. An answer this page said was not saved is not in the ledger: give it again.");
  }
  const cur = S.items[idx] && S.items[idx].sample_id;
  S = b;
  const k = keepIdx && cur ? S.items.findIndex((i) => i.sample_id === cur) : -1;
  if (k >= 0) idx = k; else { const j = S.items.findIndex((i) => i.label === null); idx = j >= 0 ? j : 0; }
  render();
  return true;
}
document.addEventListener("keydown", (e) => {
  if (e.target === $("filter")) {
    // a pick gives the keys back to the shortcuts (1–9, x, u, arrows), which the filter would otherwise take as text
    if (e.key === "Enter") { const b = $("classes").querySelector(".cls"); if (b) { $("filter").blur(); pick(Number(b.dataset.label)); } e.preventDefault(); }
    else if (e.key === "Escape") { $("filter").blur(); }
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const it = S.items[idx];
  if (/^[1-9]$/.test(e.key) && it) { const c = shortcuts(it)[Number(e.key) - 1]; if (c !== undefined) pick(c); e.preventDefault(); }
  else if (e.key === "ArrowRight") { go(1); e.preventDefault(); }
  else if (e.key === "ArrowLeft") { go(-1); e.preventDefault(); }
  else if (e.key === "u" || e.key === "U") { undo(); e.preventDefault(); }
  else if ((e.key === "x" || e.key === "X") && it) { pick(DROPPED); e.preventDefault(); }
  else if (e.key === "/") { $("filter").focus(); e.preventDefault(); }
});
$("filter").addEventListener("input", () => { const it = S.items[idx]; if (it) renderClasses(it); });
$("prev").onclick = () => go(-1); $("next").onclick = () => go(1); $("undo").onclick = undo;
$("drop").onclick = () => pick(DROPPED);
// a clicked button gives the focus back: Space or Enter would press it again ("can't label" on the next item)
for (const id of ["prev", "next", "undo", "drop"]) $(id).addEventListener("click", () => $(id).blur());
window.addEventListener("focus", () => refresh(true));
refresh(false).then((ok) => { if (ok) status("info", !S.items.length ? "Nothing to label." : S.done >= S.total ? finished() : "Pick a class: click it or press its number."); });
</script>
</body></html>
"""
