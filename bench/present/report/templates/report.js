// Sortable tables and "save the source data", in plain JavaScript: the page must work offline.
(function () {
  "use strict";

  function cellValue(row, index) {
    var td = row.children[index];
    if (!td) return { num: NaN, text: "" };
    var raw = td.hasAttribute("data-v") ? td.getAttribute("data-v") : td.textContent;
    var num = raw === "" || raw === "None" ? NaN : Number(raw);
    return { num: num, text: td.textContent.trim() };
  }

  function sortTable(table, index, th) {
    var body = table.tBodies[0];
    if (!body) return;
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var rows = Array.prototype.slice.call(body.rows);
    var numeric = rows.every(function (r) {
      var v = cellValue(r, index);
      return !isNaN(v.num) || v.text === "—" || v.text === "";
    });
    rows.sort(function (a, b) {
      var x = cellValue(a, index), y = cellValue(b, index), d;
      if (numeric) {
        // Missing values ("—") sort last either way.
        if (isNaN(x.num) && isNaN(y.num)) return 0;
        if (isNaN(x.num)) return 1;
        if (isNaN(y.num)) return -1;
        d = x.num - y.num;
      } else {
        d = x.text.localeCompare(y.text, undefined, { numeric: true });
      }
      return ascending ? d : -d;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, index) {
      th.addEventListener("click", function () { sortTable(table, index, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortTable(table, index, th); }
      });
    });
  });

  // The embedded data: compact JSON, gzipped and base64-encoded (bench.present.report.page.embed_json).
  function sourceText() {
    var bin = atob(document.getElementById("source-data").textContent.trim());
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text();
  }

  var button = document.getElementById("download-data");
  if (button) {
    button.addEventListener("click", function () {
      sourceText().then(function (text) {
        var url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
        var a = document.createElement("a");
        a.href = url;
        a.download = "bench-report-data.json";
        document.body.appendChild(a);
        a.click();
        a.remove();
        setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
      });
    });
  }

  // The embedded data must decode and parse; say so on the page (console.error is recorded) if it does not.
  sourceText().then(function (text) {
    JSON.parse(text);
    document.documentElement.setAttribute("data-source-ok", "1");
  }).catch(function (e) { console.error("the embedded source data cannot be read: " + e); });
  document.documentElement.setAttribute("data-report-ready", "1");
})();
