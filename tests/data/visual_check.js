// Injected into a copy of a report by tests/test_report_visual.py: measures, as the browser laid it out,
// every figure's text and marks and every table, and writes what it finds into the DOM as JSON
// (a pre element with id visual-findings), which `chromium --dump-dom` hands back.
//
// Figures are inline SVG from matplotlib with real <text> (svg.fonttype none): each axes is a
// <g id="…axes_N"> whose first patch is its background rectangle; its direct children line2d_*,
// PathCollection_*, LineCollection_*, PolyCollection_* and patch_* groups are the marks.
(function () {
  var TOLERANCE = 1.5;  // px: anti-aliasing and rounding, not a visible overlap
  var TEX = /\\(mathdefault|times|cdot|mathrm|frac)\b|\^\{|\$\\/;
  var out = {figures: [], tables: []};

  function box(el) {
    var r = el.getBoundingClientRect();
    return {x0: r.left, y0: r.top, x1: r.right, y1: r.bottom, w: r.width, h: r.height};
  }
  function overlap(a, b, tol) {  // boxes overlap by more than tol px in both directions
    return Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0) > tol && Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0) > tol;
  }
  function touches(a, b) {  // share at least a point (a zero-width line on the edge touches)
    return Math.min(a.x1, b.x1) >= Math.max(a.x0, b.x0) && Math.min(a.y1, b.y1) >= Math.max(a.y0, b.y0);
  }
  function inside(a, b, tol) {
    return a.x0 >= b.x0 - tol && a.x1 <= b.x1 + tol && a.y0 >= b.y0 - tol && a.y1 <= b.y1 + tol;
  }
  function round(b) { return [b.x0, b.y0, b.x1, b.y1].map(function (v) { return Math.round(v); }); }

  Array.prototype.forEach.call(document.querySelectorAll("figure.fig"), function (fig) {
    var svg = fig.querySelector("svg");
    if (!svg) return;
    var found = {fig: fig.getAttribute("data-fig"), label: svg.getAttribute("aria-label"), texts: 0, marks: 0,
                 overlaps: [], outside: [], invisible: [], tex: []};
    var texts = [];
    Array.prototype.forEach.call(svg.querySelectorAll("text"), function (t) {
      var s = t.textContent.trim();
      var b = box(t);
      if (!s || b.w === 0 || b.h === 0) return;
      texts.push({text: s, box: b});
      if (TEX.test(s)) found.tex.push(s);
    });
    found.texts = texts.length;
    for (var i = 0; i < texts.length; i++) {
      for (var j = i + 1; j < texts.length; j++) {
        if (overlap(texts[i].box, texts[j].box, TOLERANCE)) {
          found.overlaps.push([texts[i].text, texts[j].text, round(texts[i].box), round(texts[j].box)]);
        }
      }
    }
    Array.prototype.forEach.call(svg.querySelectorAll("g"), function (ax) {
      if (!/axes_\d+$/.test(ax.id)) return;
      var background = null;
      var marks = [];
      Array.prototype.forEach.call(ax.children, function (g) {
        var id = g.id || "";
        if (/patch_\d+$/.test(id) && background === null) { background = g.querySelector("path"); return; }
        if (/(line2d|PathCollection|LineCollection|PolyCollection|patch)_\d+$/.test(id)) marks.push(g);
      });
      if (!background) return;
      var area = box(background);
      marks.forEach(function (g) {
        // Markers, whiskers and scatter points must lie wholly inside; a clipped line or band must show
        // at least in part (one drawn wholly outside is a mark the legend may list but no reader sees).
        var strict = /(LineCollection|PathCollection)_\d+$/.test(g.id);
        Array.prototype.forEach.call(g.querySelectorAll("use, path"), function (el) {
          var b = box(el);
          if (b.w === 0 && b.h === 0) return;
          found.marks += 1;
          var clipped = el.closest("[clip-path]") !== null;
          var marker = strict || el.tagName.toLowerCase() === "use";
          if ((marker || !clipped) && !inside(b, area, TOLERANCE)) {
            found.outside.push([g.id.replace(/^f[0-9a-f]+-/, ""), round(b), round(area)]);
          } else if (clipped && !touches(b, area)) {
            found.invisible.push([g.id.replace(/^f[0-9a-f]+-/, ""), round(b), round(area)]);
          }
        });
      });
    });
    out.figures.push(found);
  });

  Array.prototype.forEach.call(document.querySelectorAll(".table-wrap"), function (wrap) {
    var table = wrap.querySelector("table");
    out.tables.push({id: table ? table.id : "", scroll: wrap.scrollWidth, client: wrap.clientWidth,
                     clipped: wrap.scrollWidth > wrap.clientWidth + 1});
  });

  var pre = document.createElement("pre");
  pre.id = "visual-findings";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
