/* Leaderboard interactions (no network, no libraries): sortable table columns and filters by model
   kind and modality. Filters can be preset in the URL: index.html?kind=baseline&modality=ct. */
(function () {
  "use strict";
  var root = document.documentElement;

  function cellValue(row, idx, type) {
    var c = row.cells[idx];
    if (!c) { return null; }
    var v = c.getAttribute("data-v");
    if (v === null) { v = c.textContent.trim(); }
    if (type === "num") {
      if (v === "") { return null; }
      var x = parseFloat(v);
      return isNaN(x) ? null : x;
    }
    return v.toLowerCase();
  }

  function sortTable(th) {
    var table = th.closest("table");
    var body = table.tBodies[0];
    if (!body) { return; }
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var type = th.getAttribute("data-sort");
    var current = th.getAttribute("aria-sort");
    var first = th.getAttribute("data-dir") === "desc" ? "descending" : "ascending";
    var dir = current === first ? (first === "ascending" ? "descending" : "ascending") : first;
    Array.prototype.forEach.call(th.parentNode.children, function (o) { o.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, idx, type), y = cellValue(b, idx, type);
      if (x === null && y === null) { return 0; }
      if (x === null) { return 1; }   // missing values last in both directions
      if (y === null) { return -1; }
      return x < y ? -sign : x > y ? sign : 0;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function applyFilters() {
    var kind = document.getElementById("f-kind");
    var mod = document.getElementById("f-modality");
    var k = kind ? kind.value : "";
    var m = mod ? mod.value : "";
    var shown = 0, total = 0;
    document.querySelectorAll("tr[data-kind]").forEach(function (tr) {
      var mods = (tr.getAttribute("data-modalities") || "").split(" ");
      var ok = (!k || tr.getAttribute("data-kind") === k) && (!m || mods.indexOf(m) >= 0);
      tr.hidden = !ok;
      total += 1;
      if (ok) { shown += 1; }
    });
    var count = document.getElementById("f-count");
    if (count) { count.textContent = shown + " of " + total + " rows shown"; }
    root.setAttribute("data-filter", "kind=" + k + ";modality=" + m);
  }

  function init() {
    document.querySelectorAll("th[data-sort]").forEach(function (th) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortTable(th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortTable(th); }
      });
    });
    var params = new URLSearchParams(window.location.search);
    [["f-kind", "kind"], ["f-modality", "modality"]].forEach(function (p) {
      var el = document.getElementById(p[0]);
      if (!el) { return; }
      var want = params.get(p[1]);
      if (want !== null) {
        for (var i = 0; i < el.options.length; i++) {
          if (el.options[i].value === want) { el.value = want; }
        }
      }
      el.addEventListener("change", applyFilters);
    });
    if (document.getElementById("f-kind")) { applyFilters(); }
    root.setAttribute("data-js-ready", "1");
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
