/* Kuaxin enterprise portal: vanilla JS over the /v1 JSON API.
   The firm's key lives in sessionStorage only; it is sent in the X-API-Key header, never in a URL.
   Every value from the API is inserted with textContent (no HTML injection). */
(function () {
  "use strict";

  var body = document.body;
  var T = JSON.parse(document.getElementById("kx-texts").textContent);
  var LANG = body.dataset.lang;
  var API = body.dataset.api;
  var PORTAL = body.dataset.portal;
  var KEY = "kx_key", FIRM = "kx_firm", ORG = "kx_org", NAME = "kx_name";

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "class") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }
  function svg(tag, attrs, text) {
    var node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function showError(message) {
    var box = document.getElementById("error");
    box.textContent = T.error + ": " + message;
    box.hidden = false;
  }
  function clearError() { document.getElementById("error").hidden = true; }
  function pct(x, digits) { return (x * 100).toFixed(digits === undefined ? 2 : digits) + "%"; }
  function num(x) {
    if (x === null || x === undefined) return "–";
    if (typeof x !== "number") return String(x);
    return x.toLocaleString(LANG === "zh" ? "zh-CN" : "en-US", { maximumFractionDigits: 4 });
  }
  function money(x) {
    if (x === null || x === undefined) return "–";
    return Math.round(x).toLocaleString(LANG === "zh" ? "zh-CN" : "en-US");
  }
  function label(obj, base) { return obj[base + "_" + LANG] || obj[base + "_en"] || ""; }
  // A catalog text with {fields} filled in.
  function fill(key, fields) {
    return (T[key] || key).replace(/\{(\w+)\}/g, function (_, k) { return fields[k] === undefined ? "" : fields[k]; });
  }
  // Round away float noise (1.0000000000000002 -> 1) and keep within [lo, hi].
  function tidy(x, lo, hi) {
    if (typeof x !== "number" || !isFinite(x)) return x;
    var v = Number(x.toPrecision(12));
    if (lo !== null && lo !== undefined && v < lo) v = lo;
    if (hi !== null && hi !== undefined && v > hi) v = hi;
    return v;
  }

  function api(path, options) {
    options = options || {};
    var headers = { "X-API-Key": sessionStorage.getItem(KEY) || "" };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, {
      method: options.method || (options.body !== undefined ? "POST" : "GET"),
      headers: headers,
      body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
      credentials: "omit",
      cache: "no-store"
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) {
          var err = new Error(data.detail || r.statusText);
          err.status = r.status;
          throw err;
        }
        return data;
      });
    });
  }
  function firmPath(suffix) {
    return API + "/firms/" + encodeURIComponent(sessionStorage.getItem(FIRM)) + suffix;
  }

  /* ------------------------------------------------------------------ sign in / out */
  function initSignIn() {
    var form = document.getElementById("signin-form");
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      clearError();
      var key = document.getElementById("api-key").value.trim();
      fetch(PORTAL + "/api/whoami", { headers: { "X-API-Key": key }, credentials: "omit", cache: "no-store" })
        .then(function (r) { return r.json().then(function (d) { return { ok: r.ok, data: d }; }); })
        .then(function (res) {
          if (!res.ok) { showError(T.signin_bad); return; }
          if (res.data.role !== "enterprise" || !res.data.firm_usc) { showError(T.signin_not_firm); return; }
          sessionStorage.setItem(KEY, key);
          sessionStorage.setItem(FIRM, res.data.firm_usc);
          sessionStorage.setItem(ORG, res.data.org);
          sessionStorage.setItem(NAME, res.data.firm_name || "");
          window.location.assign(PORTAL + "/grade");
        })
        .catch(function (e) { showError(e.message); });
    });
  }
  function requireSignIn() {
    if (!sessionStorage.getItem(KEY) || !sessionStorage.getItem(FIRM)) {
      window.location.replace(PORTAL + "/");
      return false;
    }
    var who = document.getElementById("who");
    // The firm's registered name (from the data), not the label its key was created with.
    if (who) who.textContent = T.signed_in_as + ": " + (sessionStorage.getItem(NAME) || sessionStorage.getItem(ORG) || "") + " · " + sessionStorage.getItem(FIRM);
    var out = document.getElementById("sign-out");
    if (out) out.addEventListener("click", function () {
      sessionStorage.clear();
      window.location.assign(PORTAL + "/");
    });
    return true;
  }

  /* ------------------------------------------------------------------ feature labels */
  var featureInfo = null;
  function loadFeatures() {
    if (featureInfo) return Promise.resolve(featureInfo);
    return api(PORTAL + "/api/features").then(function (d) {
      featureInfo = {};
      d.features.forEach(function (f) { featureInfo[f.name] = f; });
      return featureInfo;
    });
  }
  function featureLabel(name) {
    var f = featureInfo && featureInfo[name];
    if (f) return label(f, "description");
    if (T[name]) return T[name];  // need.purpose, need.amount_cny, ...
    if (T["model." + name]) return T["model." + name];
    if (name === "in_default") return T["rule.not_in_default"];
    return name;
  }
  var WHOLE_UNITS = ["CNY", "USD", "months", "days", "years", "count", "cases", "loans", "orders", "persons", "stores", "policy years"];
  // A feature's value as people read it: category label, yes/no, or a rounded number with unit.
  function valueLabel(name, value) {
    if (value === null || value === undefined) return "–";
    var f = featureInfo && featureInfo[name];
    if (f && f.categories) {
      var labels = f["category_labels_" + LANG] || {};
      return labels[String(value)] || String(value);
    }
    if (f && (f.dtype === "bool" || f.unit === "0/1")) return Number(value) ? T.yes : T.no;
    if (typeof value !== "number") return String(value);
    var v = tidy(value, f ? f.lower : null, f ? f.upper : null);
    if (f && WHOLE_UNITS.indexOf(f.unit) >= 0) v = Math.round(v);  // rounded to its unit
    var shown = num(v);
    var unit = f && f["unit_" + LANG];
    return unit && f.unit !== "share" && f.unit !== "ratio" ? shown + " " + unit : shown;
  }

  /* ------------------------------------------------------------------ grade */
  // A firm in default gets a red badge instead of a grade band (its grade D is not a model grade).
  function showGrade(node, d) {
    if (d.in_default) node.replaceChildren(el("span", { class: "badge default", text: T.in_default }));
    else node.textContent = d.grade;
  }
  function reasonsChart(contributions) {
    var holder = document.getElementById("reasons-chart");
    var rows = contributions.slice(0, 8);
    var max = Math.max.apply(null, rows.map(function (c) { return Math.abs(c.contribution); }).concat([1e-9]));
    // Drawn at the holder's width so text keeps its size on a phone: label line, then the bar.
    var width = Math.max(280, Math.min(holder.clientWidth || 640, 900));
    var rowH = 46, mid = width / 2, barMax = mid - 4, maxChars = Math.floor(width / 8);
    var height = rows.length * rowH + 28;
    var root = svg("svg", { viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "img", "aria-labelledby": "chart-title chart-desc" });
    root.appendChild(svg("title", { id: "chart-title" }, T.reasons_title));
    root.appendChild(svg("desc", { id: "chart-desc" }, T.reasons_chart_label));
    root.appendChild(svg("line", { x1: mid, x2: mid, y1: 0, y2: height - 22, stroke: "#4a4a4a", "stroke-width": 1 }));
    root.appendChild(svg("text", { x: mid + 6, y: height - 6, "font-size": 13, fill: "#a4161a" }, "→ " + T.raises_risk));
    root.appendChild(svg("text", { x: mid - 6, y: height - 6, "font-size": 13, fill: "#1b6b2f", "text-anchor": "end" }, T.lowers_risk + " ←"));
    rows.forEach(function (c, i) {
      var w = Math.max(2, Math.abs(c.contribution) / max * barMax);
      var up = c.contribution > 0;
      var y = i * rowH + 2;
      var text = featureLabel(c.feature);
      if (text.length > maxChars) text = text.slice(0, maxChars - 1) + "…";
      root.appendChild(svg("text", { x: 0, y: y + 14, "font-size": 13, fill: "#1a1a1a" }, text));
      root.appendChild(svg("rect", { x: up ? mid : mid - w, y: y + 20, width: w, height: 16, fill: up ? "#a4161a" : "#1b6b2f", rx: 3 }));
    });
    // The same numbers as a table for screen readers.
    var table = el("table", {}, [
      el("caption", { text: T.reasons_title }),
      el("thead", {}, [el("tr", {}, [el("th", { scope: "col", text: T.feature }), el("th", { scope: "col", text: T.value }), el("th", { scope: "col", text: T.effect })])]),
      el("tbody", {}, rows.map(function (c) {
        return el("tr", {}, [el("td", { text: featureLabel(c.feature) }), el("td", { text: valueLabel(c.feature, c.value) }),
          el("td", { text: (c.contribution > 0 ? T.raises_risk : T.lowers_risk) + " " + c.contribution.toFixed(3) })]);
      }))
    ]);
    // A hidden table wider than the screen would still widen the page: clip it in a 1px box.
    holder.replaceChildren(root, el("div", { class: "visually-hidden" }, [table]));
  }
  function initGrade() {
    Promise.all([api(firmPath("/explanation")), loadFeatures()]).then(function (res) {
      var d = res[0];
      showGrade(document.getElementById("grade-value"), d);
      if (d.in_default) {
        var box = document.getElementById("default-box");
        var reasons = document.getElementById("default-reasons");
        reasons.replaceChildren.apply(reasons, (d.default_reasons || []).map(function (r) {
          return el("li", { text: (LANG === "zh" ? r.text_zh : r.text_en) + " (" + featureLabel(r.feature) + ": " + valueLabel(r.feature, r.value) + ")" });
        }));
        box.hidden = false;
      }
      document.getElementById("score-value").textContent = d.score === null ? "–" : Math.round(d.score);
      document.getElementById("pd-value").textContent = pct(d.pd);
      document.getElementById("class-value").textContent = d.supervision_class;
      // Which way the percentile points: the share of industry peers the firm scores at or above.
      document.getElementById("peer-value").textContent = d.peer_percentile !== undefined ? fill("peer_percentile_value", { p: Math.round(d.peer_percentile) }) : "–";
      document.getElementById("asof-value").textContent = d.as_of;
      document.getElementById("version-value").textContent = d.model_version;
      reasonsChart(d.contributions);
      var list = document.getElementById("reasons-list");
      list.replaceChildren.apply(list, d.reasons.map(function (r) {
        return el("li", { text: (LANG === "zh" ? r.text_zh : r.text_en) + " (" + featureLabel(r.feature) + ": " + valueLabel(r.feature, r.value) + ")" });
      }));
    }).catch(function (e) { showError(e.message); });
  }

  /* ------------------------------------------------------------------ matches */
  function traceTable(trace) {
    return el("div", { class: "table-wrap" }, [el("table", {}, [
      el("thead", {}, [el("tr", {}, [T.rule, T.actual, T.result].map(function (h) { return el("th", { scope: "col", text: h }); }))]),
      el("tbody", {}, trace.map(function (t) {
        // The rule and the firm's value as sentences from the text catalog (no field names).
        return el("tr", {}, [
          el("td", { text: t["text_" + LANG] || t.rule }),
          el("td", { text: t["actual_" + LANG] || (t.actual === null ? "–" : num(t.actual)) }),
          el("td", { class: t.pass ? "pass" : "fail", text: (t.pass ? "✓ " + T.pass : "✗ " + T.fail) })
        ]);
      }))
    ])]);
  }
  function recourseBlock(rec) {
    if (!rec) return null;
    var items = rec.hints.map(function (h) {
      if (h.change === "cure_default") return el("li", { class: "fail", text: T.in_default + " → " + T.change_cure_default });
      return el("li", { text: T.required + " " + (h["text_" + LANG] || h.rule) + ", " + T.actual + " " + (h["actual_" + LANG] || "–") + " → " + (T["change_" + h.change] || h.change) });
    });
    var parts = [el("h4", { text: T.recourse }), el("ul", {}, items)];
    if (rec.plan && rec.plan.searched && !rec.plan.reached) {
      parts.push(el("p", { class: "muted", text: T.no_plan }));
    } else if (rec.plan && rec.plan.searched && rec.plan.changes.length) {
      parts.push(el("p", { text: T.recourse_plan + ":" }));
      parts.push(el("ul", {}, rec.plan.changes.map(function (c) {
        return el("li", { text: featureLabel(c.feature) + ": " + valueLabel(c.feature, c.before) + " → " + valueLabel(c.feature, c.after) });
      })));
    } else if (rec.plan && rec.plan.blocked_by && rec.plan.blocked_by.length) {
      parts.push(el("p", { class: "muted", text: T.blocked + ": " + rec.plan.blocked_by.map(featureLabel).join(", ") }));
    }
    return el("div", { class: "recourse" }, parts);
  }
  function productCard(m, isInsurance) {
    var ok = m.eligible;
    var facts = [el("span", { text: T.provider + ": " + label(m, "provider") })];
    if (isInsurance) {
      if (m.quote && m.quote.rate !== null) facts.push(el("span", { text: T.premium_rate + ": " + pct(m.quote.rate, 3) }));
    } else {
      facts.push(el("span", { text: T.limit + ": ¥" + money(m.limit_cny) }));
      if (m.price) facts.push(el("span", { text: T.rate + ": " + pct(m.price.rate) }));
      if (ok) {
        facts.push(el("span", { text: T.offer + ": ¥" + money(m.offer_cny) }));
        facts.push(el("span", { class: "covers " + (m.covers_need ? "pass" : "fail"), text: m.covers_need ? "✓ " + T.covers_need : "✗ " + T.covers_need_no }));
      }
    }
    var tags = m["policy_tag_names_" + LANG] || m.policy_tags;
    facts.push(el("span", { text: T.policy_tags + ": " + tags.join(LANG === "zh" ? "、" : ", ") }));
    return el("article", { class: "card product " + (ok ? "ok" : "no"), "data-product": m.product_id, "data-covers-need": String(!!m.covers_need) }, [
      el("h3", {}, [label(m, "name") + " ", el("span", { class: "badge " + (ok ? "ok" : "no"), text: ok ? T.eligible : T.not_eligible })]),
      el("div", { class: "kv" }, facts),
      el("details", {}, [el("summary", { text: T.trace }), traceTable(m.trace)]),
      ok ? null : recourseBlock(m.recourse)
    ]);
  }
  function bundleTable(bundles) {
    if (!bundles.length) return el("p", { text: T.no_bundles });
    return el("div", { class: "table-wrap card" }, [el("table", {}, [
      el("thead", {}, [el("tr", {}, [T.product, T.rate_unbundled, T.rate_bundled, T.saving].map(function (h) { return el("th", { scope: "col", text: h }); }))]),
      el("tbody", {}, bundles.map(function (b) {
        return el("tr", {}, [el("td", { text: label(b, "name") }), el("td", { text: pct(b.rate_unbundled) }),
          el("td", { text: pct(b.rate_bundled) }), el("td", { text: money(b.saving_cny) })]);
      }))
    ])]);
  }
  function initMatches() {
    loadFeatures().catch(function () {});
    document.getElementById("need-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      clearError();
      var out = document.getElementById("matches");
      out.replaceChildren(el("p", { text: T.loading }));
      api(firmPath("/matches"), { body: {
        amount_cny: Number(document.getElementById("amount").value),
        purpose: document.getElementById("purpose").value,
        tenor_months: Number(document.getElementById("tenor").value),
        insurance_wanted: document.getElementById("insurance-wanted").checked
      } }).then(function (d) {
        out.replaceChildren(
          el("h2", { text: T.financing }),
          el("div", {}, d.financing.map(function (m) { return productCard(m, false); })),
          el("h2", { text: T.bundles }), bundleTable(d.bundles),
          el("h2", { text: T.insurance }),
          el("div", {}, d.insurance.map(function (m) { return productCard(m, true); }))
        );
      }).catch(function (e) { out.replaceChildren(); showError(e.message); });
    });
  }

  /* ------------------------------------------------------------------ what-if */
  function initWhatIf() {
    var fields = document.getElementById("whatif-fields");
    var select = document.getElementById("add-feature");
    var current = {};
    function addField(name) {
      var f = featureInfo[name];
      if (!f || !f.actionable || document.getElementById("wi-" + name)) return;
      var id = "wi-" + name;
      var input;
      if (f.categories) {
        var catLabels = f["category_labels_" + LANG] || {};
        input = el("select", { id: id, name: name }, f.categories.map(function (c) { return el("option", { value: c, text: catLabels[c] || c }); }));
        if (current[name] !== null && current[name] !== undefined) input.value = String(current[name]);
      } else {
        // Any value within the bounds may be tried (the catalog step is only the search step of recourse).
        input = el("input", { id: id, name: name, type: "number", step: f.dtype === "int" ? "1" : "any", inputmode: "decimal" });
        if (f.lower !== null) input.setAttribute("min", f.lower);
        if (f.upper !== null) input.setAttribute("max", f.upper);
        // Prefilled rounded and within the bounds, so the browser never blocks the form.
        if (current[name] !== null && current[name] !== undefined) input.value = tidy(current[name], f.lower, f.upper);
        input.addEventListener("change", function () {
          if (input.value === "") return;
          var v = tidy(Number(input.value), f.lower, f.upper);
          if (f.dtype === "int" || f.dtype === "bool") v = Math.round(v);
          input.value = v;
        });
      }
      input.dataset.original = input.value;
      fields.appendChild(el("div", { class: "field" }, [
        el("label", { for: id, text: label(f, "description") + (f["unit_" + LANG] ? " (" + f["unit_" + LANG] + ")" : "") }),
        input,
        el("small", { class: "muted", text: T.current + ": " + valueLabel(name, current[name]) })
      ]));
      var opt = select.querySelector('option[value="' + CSS.escape(name) + '"]');
      if (opt) opt.remove();
    }
    Promise.all([api(firmPath("/explanation")), loadFeatures()]).then(function (res) {
      var d = res[0];
      showGrade(document.getElementById("grade-before"), d);
      d.contributions.forEach(function (c) { current[c.feature] = c.value; });
      var actionable = Object.keys(featureInfo).filter(function (n) { return featureInfo[n].actionable; });
      actionable.sort(function (a, b) { return featureLabel(a).localeCompare(featureLabel(b)); });
      actionable.forEach(function (name) { select.appendChild(el("option", { value: name, text: featureLabel(name) })); });
      // Start with the actionable features that raise the firm's risk the most.
      d.contributions.filter(function (c) { return featureInfo[c.feature] && featureInfo[c.feature].actionable && c.contribution > 0; })
        .slice(0, 6).forEach(function (c) { addField(c.feature); });
    }).catch(function (e) { showError(e.message); });
    document.getElementById("add-feature-button").addEventListener("click", function () {
      if (select.value) addField(select.value);
    });
    document.getElementById("whatif-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      clearError();
      var changes = {};
      fields.querySelectorAll("input, select").forEach(function (inp) {
        if (inp.value !== inp.dataset.original && inp.value !== "") {
          changes[inp.name] = featureInfo[inp.name].categories ? inp.value : Number(inp.value);
        }
      });
      if (!Object.keys(changes).length) { showError(T.no_change); return; }
      api(firmPath("/what-if"), { body: { changes: changes } }).then(function (d) {
        document.getElementById("grade-before").textContent = d.before.grade;
        document.getElementById("grade-after").textContent = d.after.grade;
        document.getElementById("pd-change").textContent = T.pd + ": " + pct(d.before.pd) + " → " + pct(d.after.pd);
      }).catch(function (e) { showError(e.message); });
    });
  }

  /* ------------------------------------------------------------------ quote */
  function initQuote() {
    var products = {};
    var prod = document.getElementById("q-product");
    var country = document.getElementById("q-country");
    var cover = document.getElementById("q-cover");
    var fixedFields = ["q-country", "q-buyer-grade", "q-terms", "q-days"];
    // The cover field follows the product (its default and maximum), and a product with a
    // fixed shipment (the buyer is the firm itself) shows that shipment and sends none.
    function productChanged() {
      var p = products[prod.value];
      if (!p || !p.insurance) return;
      cover.max = Math.round(p.insurance.cover_max * 100);
      cover.value = Math.round(p.insurance.cover_default * 100);
      var fixed = p.insurance.shipment;
      fixedFields.forEach(function (id) { document.getElementById(id).disabled = !!fixed; });
      document.getElementById("q-fixed").hidden = !fixed;
      if (fixed) {
        country.value = fixed.buyer_country;
        document.getElementById("q-terms").value = fixed.terms;
        document.getElementById("q-days").value = fixed.credit_days;
      }
    }
    Promise.all([api(API + "/products"), api(API + "/countries")]).then(function (res) {
      res[0].products.filter(function (p) { return p.insurance; }).forEach(function (p) {
        products[p.id] = p;
        prod.appendChild(el("option", { value: p.id, text: label(p, "name") + " – " + label(p.provider, "name") }));
      });
      res[1].countries.forEach(function (c) {
        country.appendChild(el("option", { value: c.iso3, text: label(c, "name") + " (" + c.iso3 + ", " + label(c, "category") + ")" }));
      });
      country.value = "USA";
      productChanged();
    }).catch(function (e) { showError(e.message); });
    prod.addEventListener("change", productChanged);
    document.getElementById("quote-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      clearError();
      var out = document.getElementById("quote-result");
      var p = products[prod.value];
      var body = {
        product_id: prod.value,
        amount_usd: Number(document.getElementById("q-amount").value),
        cover: Number(cover.value) / 100
      };
      if (!(p && p.insurance && p.insurance.shipment)) {
        body.buyer_country = country.value;
        body.buyer_grade = document.getElementById("q-buyer-grade").value;
        body.terms = document.getElementById("q-terms").value;
        body.credit_days = Number(document.getElementById("q-days").value);
      }
      api(firmPath("/quote"), { body: body }).then(function (d) {
        var q = d.quote;
        if (q.decision !== "quoted") {
          out.replaceChildren(el("section", { class: "card product no", id: "quote-declined" }, [
            el("h2", {}, [el("span", { class: "badge no", text: T.declined })]),
            el("p", { text: T.reasons_declined + ":" }),
            el("ul", {}, q.declines.map(function (r) { return el("li", { text: label(r, "message") }); }))
          ]));
          return;
        }
        out.replaceChildren(el("section", { class: "card product ok", id: "quote-ok" }, [
          el("h2", {}, [el("span", { class: "badge ok", text: T.quoted }), " " + T.premium_rate + " " + pct(q.rate, 3)]),
          el("dl", { class: "facts" }, [
            [T.premium, money(q.premium_usd)], [T.subsidy, money(q.subsidy_usd)], [T.net_premium, money(q.net_premium_usd)],
            [T.buyer_limit, money(q.buyer_credit_limit_usd)], [T.insured_amount, money(q.insured_amount_usd)],
            [T.max_liability, money(q.max_liability_usd)]
          ].map(function (kv) { return el("div", {}, [el("dt", { text: kv[0] }), el("dd", { text: kv[1] })]); })),
          el("div", { class: "table-wrap" }, [el("table", {}, [
            el("thead", {}, [el("tr", {}, [T.component, T.factor, T.rate_after].map(function (h) { return el("th", { scope: "col", text: h }); }))]),
            el("tbody", {}, q.components.map(function (c) {
              return el("tr", {}, [el("td", { text: label(c, "label") || c.basis }), el("td", { text: c.factor.toFixed(4) }), el("td", { text: pct(c.rate_after, 3) })]);
            }))
          ])])
        ]));
      }).catch(function (e) { showError(e.message); });
    });
  }

  /* ------------------------------------------------------------------ access log */
  // Who read the record: a page of 20 at a time, the firm's own views hidden unless asked for.
  var ACCESS_PAGE = 20;
  function accessRow(r) {
    var purpose = r.purpose === "own record" ? T["access_purpose.own_record"] : r.purpose;
    return el("tr", {}, [el("td", { text: new Date(r.time).toLocaleString(LANG === "zh" ? "zh-CN" : "en-GB") }),
      el("td", { text: r.institution }), el("td", { text: T["role." + r.role] || r.role }), el("td", { text: purpose }),
      el("td", { text: T["endpoint." + r.endpoint] || r.endpoint })]);
  }
  function initAccess() {
    var tbody = document.querySelector("#access-table tbody");
    var more = document.getElementById("access-more");
    var hideOwn = document.getElementById("hide-own");
    var next = null;
    function load(reset) {
      var query = "?limit=" + ACCESS_PAGE + (hideOwn.checked ? "&others_only=true" : "") + (!reset && next ? "&before_id=" + next : "");
      api(firmPath("/access-log") + query).then(function (d) {
        if (reset) tbody.replaceChildren();
        d.records.forEach(function (r) { tbody.appendChild(accessRow(r)); });
        if (!tbody.children.length) tbody.replaceChildren(el("tr", {}, [el("td", { colspan: 5, text: T.no_records })]));
        next = d.next_before_id;
        more.hidden = next === null || next === undefined;
      }).catch(function (e) { showError(e.message); });
    }
    hideOwn.addEventListener("change", function () { load(true); });
    more.addEventListener("click", function () { load(false); });
    load(true);
  }

  var pages = { grade: initGrade, matches: initMatches, "what-if": initWhatIf, quote: initQuote, "access-log": initAccess };
  document.addEventListener("DOMContentLoaded", function () {
    if (body.dataset.page === "signin") { initSignIn(); return; }
    if (!requireSignIn()) return;
    var init = pages[body.dataset.page];
    if (init) init();
  });
})();
