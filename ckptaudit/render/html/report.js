// ckptaudit report: hover tooltips, pinned checkpoints and the lazy checkpoint table.
// Charts are drawn server-side as SVG; this script only reads the data block once.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("ckpt-data").textContent);
  var tip = document.getElementById("tip");

  function fmt(v) {
    if (v === null || v === undefined) return "\u2013";
    var a = Math.abs(v);
    if (a >= 1e4 || (a > 0 && a < 1e-3)) return v.toPrecision(3);
    return String(Math.round(v * 1e4) / 1e4);
  }

  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c];
    });
  }

  // Nearest checkpoint to data coordinate x (x values ascend with the checkpoint order).
  function nearest(xs, x) {
    var lo = 0, hi = xs.length - 1;
    while (hi - lo > 1) {
      var mid = (lo + hi) >> 1;
      if (xs[mid] <= x) lo = mid; else hi = mid;
    }
    return Math.abs(xs[hi] - x) < Math.abs(xs[lo] - x) ? hi : lo;
  }

  function tipHtml(run, i) {
    var tags = "";
    if (run.names[i] === run.chosen) tags += '<span class="tag chosen">chosen</span>';
    if (run.names[i] === run.winner) tags += '<span class="tag winner">best by ' + esc(run.metric) + "</span>";
    if (run.tied.indexOf(run.names[i]) >= 0 && run.names[i] !== run.winner) tags += '<span class="tag">tied with best</span>';
    var rows = run.cols.map(function (c) {
      return "<tr><td>" + esc(c[0]) + "</td><td>" + fmt(c[1][i]) + "</td></tr>";
    }).join("");
    return "<b>" + esc(run.names[i]) + "</b> <span>" + esc(run.xlabel) + " " + run.x[i] + "</span><br>" + tags + "<table>" + rows + "</table>";
  }

  function viewX(svg, evt) {
    var pt = svg.createSVGPoint();
    pt.x = evt.clientX; pt.y = evt.clientY;
    return pt.matrixTransform(svg.getScreenCTM().inverse()).x;
  }

  function toPixel(svg, x) {
    var x0 = +svg.dataset.x0, x1 = +svg.dataset.x1, l = +svg.dataset.l, r = +svg.dataset.r;
    return l + (x - x0) / (x1 - x0) * (r - l);
  }

  function showCursor(svg, i, cls) {
    var run = data.runs[+svg.dataset.run];
    var line = svg.querySelector(".cursor");
    var px = toPixel(svg, run.x[i]).toFixed(1);
    line.setAttribute("x1", px); line.setAttribute("x2", px);
    line.setAttribute("visibility", "visible");
    line.classList.toggle("pinned", cls === "pinned");
  }

  function onMove(evt) {
    var svg = evt.currentTarget;
    var run = data.runs[+svg.dataset.run];
    var x0 = +svg.dataset.x0, x1 = +svg.dataset.x1, l = +svg.dataset.l, r = +svg.dataset.r;
    var x = x0 + (viewX(svg, evt) - l) / (r - l) * (x1 - x0);
    var i = nearest(run.x, x);
    showCursor(svg, i, "hover");
    tip.innerHTML = tipHtml(run, i);
    tip.dataset.checkpoint = run.names[i];
    tip.hidden = false;
    var left = evt.clientX + 16, top = evt.clientY + 14;
    if (left + tip.offsetWidth > window.innerWidth - 8) left = evt.clientX - tip.offsetWidth - 16;
    if (top + tip.offsetHeight > window.innerHeight - 8) top = evt.clientY - tip.offsetHeight - 14;
    tip.style.left = left + "px"; tip.style.top = top + "px";
  }

  function onLeave(evt) {
    var svg = evt.currentTarget;
    var line = svg.querySelector(".cursor");
    if (!line.classList.contains("pinned")) line.setAttribute("visibility", "hidden");
    else if (svg.dataset.pin !== undefined) showCursor(svg, +svg.dataset.pin, "pinned");
    tip.hidden = true;
  }

  var charts = document.querySelectorAll("svg.curve");
  for (var k = 0; k < charts.length; k++) {
    charts[k].addEventListener("mousemove", onMove);
    charts[k].addEventListener("mouseleave", onLeave);
  }

  // A finding's or the decision table's checkpoint link pins that checkpoint on the run's charts.
  function pin(runIndex, name) {
    var run = data.runs[runIndex];
    var i = run.names.indexOf(name);
    if (i < 0) return;
    var svgs = document.querySelectorAll('svg.curve[data-run="' + runIndex + '"]');
    for (var j = 0; j < svgs.length; j++) {
      svgs[j].dataset.pin = i;
      showCursor(svgs[j], i, "pinned");
    }
  }
  document.addEventListener("click", function (evt) {
    var a = evt.target.closest ? evt.target.closest("a.ck") : null;
    if (a) pin(+a.dataset.run, a.dataset.ck);
  });

  // The table of every checkpoint is built when opened (it can hold thousands of rows).
  var details = document.querySelectorAll("details.all");
  for (var d = 0; d < details.length; d++) {
    details[d].addEventListener("toggle", function (evt) {
      var el = evt.currentTarget, wrap = el.querySelector(".tablewrap");
      if (!el.open || wrap.firstChild) return;
      var run = data.runs[+el.dataset.run];
      var head = "<tr><th>checkpoint</th><th>" + esc(run.xlabel) + "</th>" + run.cols.map(function (c) { return "<th>" + esc(c[0]) + "</th>"; }).join("") + "</tr>";
      var body = run.names.map(function (n, i) {
        var cls = (n === run.chosen ? "chosen " : "") + (n === run.winner ? "winner " : "") + (run.tied.indexOf(n) >= 0 ? "tied" : "");
        return '<tr class="' + cls + '"><td>' + esc(n) + "</td><td>" + run.x[i] + "</td>" + run.cols.map(function (c) { return '<td class="num">' + fmt(c[1][i]) + "</td>"; }).join("") + "</tr>";
      }).join("");
      wrap.innerHTML = "<table><thead>" + head + "</thead><tbody>" + body + "</tbody></table>";
    });
  }
})();
