/* Kuaxin insurer console. The insurer's key lives in sessionStorage only and goes in the
   X-API-Key header, never in a URL. Every text comes from the page's JSON texts block. */
(function () {
  "use strict";
  var T = JSON.parse(document.getElementById("kx-texts").textContent);
  var API = document.body.dataset.api;
  var LANG = document.body.dataset.lang;
  var KEY = "kx_insurer_key";
  var fmt = new Intl.NumberFormat(LANG === "zh" ? "zh-CN" : "en-US", { maximumFractionDigits: 0 });
  var pct = new Intl.NumberFormat(LANG === "zh" ? "zh-CN" : "en-US", { style: "percent", maximumFractionDigits: 2 });

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) { e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }
  function showError(msg) { var e = $("error"); e.textContent = msg; e.hidden = !msg; }

  function call(path) {
    return fetch(API + path, { headers: { "X-API-Key": sessionStorage.getItem(KEY) || "" } })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (body) {
          if (!r.ok) { throw new Error((body && body.detail) || (T.ins_error + " " + r.status)); }
          return body;
        });
      });
  }

  function kv(pairs) {
    var dl = el("dl", { "class": "kv" });
    pairs.forEach(function (p) { dl.appendChild(el("dt", {}, [p[0]])); dl.appendChild(el("dd", {}, [String(p[1])])); });
    return dl;
  }
  function table(head, rows) {
    var t = el("table", { "class": "data" });
    t.appendChild(el("thead", {}, [el("tr", {}, head.map(function (h) { return el("th", { scope: "col" }, [h]); }))]));
    t.appendChild(el("tbody", {}, rows.map(function (r) { return el("tr", {}, r.map(function (c) {
      return c instanceof Node ? el("td", {}, [c]) : el("td", {}, [String(c)]); })); })));
    return t;
  }
  function feature(name) { return T["ins_feature_" + name] || name; }
  function message(reason) { return LANG === "zh" ? reason.message_zh : reason.message_en; }

  function renderBuyer(b) {
    var out = $("buyer-out"); out.textContent = "";
    out.appendChild(el("p", {}, [T.ins_grade + " ", el("span", { "class": "grade", id: "buyer-grade" }, [b.grade])]));
    out.appendChild(kv([
      [T.ins_pd, b.pd === undefined ? "-" : pct.format(b.pd)],
      [T.ins_as_of, b.as_of], [T.ins_source, b.source],
      [T.ins_country, b.country_iso3 + " (" + T.ins_category + " " + b.country_category + ")"],
    ]));
    if (b.limit) {
      out.appendChild(el("h3", {}, [T.ins_limit]));
      out.appendChild(kv([[T.ins_limit_recommended, fmt.format(b.limit.limit_usd)],
        [T.ins_limit_used, fmt.format(b.limit.exposure_usd)], [T.ins_limit_free, fmt.format(b.limit.available_usd)]]));
      out.appendChild(el("ul", { id: "limit-reasons" }, b.limit.reasons.map(function (r) { return el("li", {}, [message(r)]); })));
    }
    if (b.reasons) {
      out.appendChild(el("h3", {}, [T.ins_reasons]));
      out.appendChild(el("ul", { id: "grade-reasons" }, b.reasons.map(function (r) {
        return el("li", {}, [feature(r.feature) + (r.value === undefined || r.value === null ? "" : ": " + r.value)]); })));
    }
    if (b.detail_shown === false) { out.appendChild(el("p", { "class": "muted", id: "withheld" }, [T.ins_withheld])); }
    if (b.experience) {
      out.appendChild(el("h3", {}, [T.ins_experience]));
      out.appendChild(kv(Object.keys(b.experience).map(function (k) { return [feature(k), b.experience[k] === null ? "-" : b.experience[k]]; })));
    }
  }

  function chart(hist, tail) {
    var W = 640, H = 240, P = 40, ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H); svg.setAttribute("class", "chart"); svg.setAttribute("id", "loss-chart");
    svg.setAttribute("role", "img"); svg.setAttribute("aria-label", T.ins_chart_label);
    var counts = hist.counts, edges = hist.edges_usd, max = Math.max.apply(null, counts) || 1;
    var lo = edges[0], hi = edges[edges.length - 1] || 1, span = (hi - lo) || 1;
    function x(v) { return P + (W - 2 * P) * (v - lo) / span; }
    counts.forEach(function (c, i) {
      var r = document.createElementNS(ns, "rect"), h = (H - 2 * P) * c / max;
      r.setAttribute("x", x(edges[i])); r.setAttribute("width", Math.max(x(edges[i + 1]) - x(edges[i]) - 1, 1));
      r.setAttribute("y", H - P - h); r.setAttribute("height", h); r.setAttribute("class", "bar"); svg.appendChild(r);
    });
    tail.forEach(function (t, i) {
      var l = document.createElementNS(ns, "line");
      l.setAttribute("x1", x(t.var_usd)); l.setAttribute("x2", x(t.var_usd)); l.setAttribute("y1", P / 2); l.setAttribute("y2", H - P);
      l.setAttribute("class", "var"); svg.appendChild(l);
      var tx = document.createElementNS(ns, "text"); tx.setAttribute("x", x(t.var_usd) + 3); tx.setAttribute("y", P / 2 + 10 + 13 * i);  // stacked: levels can share a VaR
      tx.textContent = T.ins_var + " " + pct.format(t.level); svg.appendChild(tx);
    });
    var axis = document.createElementNS(ns, "text"); axis.setAttribute("x", P); axis.setAttribute("y", H - 8);
    axis.textContent = T.ins_chart_axis; svg.appendChild(axis);
    return svg;
  }

  function renderBook(b) {
    var out = $("book-out"); out.textContent = "";
    if (!b.policies) { out.appendChild(el("p", { id: "book-empty" }, [T.ins_book_empty])); return; }
    out.appendChild(kv([[T.ins_buyers, b.buyers], [T.ins_exposure, fmt.format(b.insured_usd)],
      [T.ins_el, fmt.format(b.expected_loss_usd)], [T.ins_scenarios, fmt.format(b.scenarios)],
      [T.ins_converged, b.converged ? T.ins_yes : T.ins_no]]));
    out.appendChild(table([T.ins_level, T.ins_var, T.ins_es], b.tail.map(function (t) {
      return [pct.format(t.level), fmt.format(t.var_usd), fmt.format(t.es_usd)]; })));
    out.appendChild(chart(b.histogram, b.tail));
    ["buyer", "country", "sector"].forEach(function (k) {
      var c = b.concentration[k];
      out.appendChild(el("h3", {}, [T["ins_conc_" + k] + " (HHI " + c.hhi.toFixed(3) + ")"]));
      out.appendChild(table([T.ins_key, T.ins_share, T.ins_tail_share], c.top.map(function (r) {
        return [r.key, pct.format(r.share), pct.format(r.tail_share)]; })));
    });
  }

  function renderClaims(c) {
    var out = $("claims-out"); out.textContent = "";
    if (!c.claims.length) { out.appendChild(el("p", {}, [T.ins_claims_empty])); return; }
    out.appendChild(table([T.ins_claim_buyer, T.ins_claim_firm, T.ins_claim_loss, T.ins_claim_status, T.ins_claim_indemnity],
      c.claims.map(function (r) {
        return [r.buyer_id, r.usc_code, fmt.format(r.loss_usd),
          el("span", { "class": "status-" + r.status }, [T["ins_status_" + r.status] || r.status]), fmt.format(r.indemnity_usd)]; })));
  }

  function guard(p) { return p.catch(function (e) { showError(e.message); }); }

  function start() {
    guard(fetch("/portal/api/whoami", { headers: { "X-API-Key": sessionStorage.getItem(KEY) || "" } })
      .then(function (r) { if (!r.ok) { throw new Error(T.ins_bad_key); } return r.json(); })
      .then(function (w) {
        if (w.role !== "insurer" && w.role !== "admin") { throw new Error(T.ins_wrong_role); }
        $("who").textContent = T.ins_signed_in_as + " " + w.org;
        $("signin").hidden = true; $("console").hidden = false; $("sign-out").hidden = false; showError("");
      }));
  }

  $("signin").addEventListener("submit", function (ev) {
    ev.preventDefault(); sessionStorage.setItem(KEY, $("key").value.trim()); start();
  });
  $("sign-out").addEventListener("click", function () { sessionStorage.removeItem(KEY); location.reload(); });
  $("buyer-form").addEventListener("submit", function (ev) {
    ev.preventDefault(); showError("");
    guard(call("/buyers/" + encodeURIComponent($("buyer-id").value.trim())).then(renderBuyer));
  });
  $("book-load").addEventListener("click", function () { showError(""); guard(call("/insurer/book?scenarios=5000").then(renderBook)); });
  $("claims-load").addEventListener("click", function () { showError(""); guard(call("/insurer/claims").then(renderClaims)); });
  if (sessionStorage.getItem(KEY)) { start(); }
})();
