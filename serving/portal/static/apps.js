/* Kuaxin applications: the firm's applications page and the provider console.
   Keys live in sessionStorage only (the firm's as in portal.js; the provider's under its own
   names) and go in the X-API-Key header, never in a URL. Values from the API are inserted with
   textContent only. */
(function () {
  "use strict";

  var body = document.body;
  var T = JSON.parse(document.getElementById("kx-texts").textContent);
  var LANG = body.dataset.lang;
  var API = body.dataset.api;
  var CONSOLE = body.dataset.console || "/console";
  var FIRM_KEY = "kx_key", FIRM = "kx_firm";
  var PKEY = "kx_provider_key", PORG = "kx_provider_org", PROLE = "kx_provider_role";

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
  function showError(message) {
    var box = document.getElementById("error");
    box.textContent = (T.error || "Error") + ": " + message;
    box.hidden = false;
    box.scrollIntoView({ block: "nearest" });
  }
  function clearError() { document.getElementById("error").hidden = true; }
  function money(x) {
    if (x === null || x === undefined) return "–";
    return Math.round(x).toLocaleString(LANG === "zh" ? "zh-CN" : "en-US");
  }
  function pct(x) { return x === null || x === undefined ? "–" : (x * 100).toFixed(2) + "%"; }
  function when(ts) { return ts ? new Date(ts).toLocaleString(LANG === "zh" ? "zh-CN" : "en-GB") : "–"; }
  function label(obj, base) { return (obj && (obj[base + "_" + LANG] || obj[base + "_en"])) || ""; }
  function shown(x) {
    if (x === null || x === undefined) return "–";
    if (typeof x === "number") return x.toLocaleString(LANG === "zh" ? "zh-CN" : "en-US", { maximumFractionDigits: 2 });
    return String(x);
  }
  function status(s) { return el("span", { class: "status status-" + s, text: T["app_status_" + s] || s }); }

  function call(key, path, options) {
    options = options || {};
    var headers = { "X-API-Key": sessionStorage.getItem(key) || "" };
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
          var fields = (data.errors || []).map(function (e) {
            return e.field + ": " + e.message + (e.expected ? " (" + e.expected + ")" : "");
          });
          var err = new Error(fields.length ? fields.join("; ") : (data.detail || r.statusText));
          err.status = r.status;
          throw err;
        }
        return data;
      });
    });
  }
  function facts(pairs) {
    return el("dl", { class: "facts" }, pairs.map(function (kv) {
      return el("div", {}, [el("dt", { text: kv[0] }), el("dd", { text: String(kv[1]) })]);
    }));
  }

  /* ------------------------------------------------------------------ decision shown to both sides */
  function decisionBlock(app) {
    var d = app.decision;
    if (!d) return null;
    var parts = [el("h3", { text: T.app_decision + ": " + (T["app_action_" + d.action] || d.action) })];
    if (d.terms) {
      var t = d.terms;
      parts.push(facts(t.amount_cny !== undefined
        ? [[T.app_amount, money(t.amount_cny)], [T.app_rate, pct(t.rate)], [T.app_tenor, t.tenor_months]]
        : [[T.app_cover, pct(t.cover)], [T.app_credit_days, t.credit_days], [T.app_limit_usd, money(t.limit_usd)]]));
    }
    if (d.conditions) {
      parts.push(el("p", { text: T.app_conditions + ":" }));
      parts.push(el("ul", {}, d.conditions.map(function (c) {
        return el("li", { text: (T["app_condition_" + c.code] || c.code) + (c.insurance_product_id ? " (" + c.insurance_product_id + ")" : "") });
      })));
    }
    if (d.information) {
      parts.push(el("p", { text: T.app_information + ":" }));
      parts.push(el("ul", {}, d.information.map(function (c) { return el("li", { text: T["app_info_" + c] || c }); })));
    }
    if (d.notice) {
      parts.push(el("div", { class: "notice", id: "notice-" + app.id }, [
        el("h4", { text: T.app_notice }), el("p", { class: "notice-text", text: d.notice[LANG] })
      ]));
    }
    if (d.note && !d.notice) parts.push(el("p", { class: "muted", text: d.note }));
    return el("section", { class: "decision" }, parts);
  }
  function historyBlock(app) {
    return el("details", {}, [el("summary", { text: T.app_history }), el("ol", { class: "history" }, app.events.map(function (e) {
      return el("li", { text: when(e.ts) + " · " + (T["app_status_" + e.to_status] || e.to_status) + " · " + (e.org || e.role) });
    }))]);
  }

  /* ------------------------------------------------------------------ the firm's page */
  function firmPath(suffix) {
    return API + "/firms/" + encodeURIComponent(sessionStorage.getItem(FIRM)) + suffix;
  }
  function firmCall(path, options) { return call(FIRM_KEY, path, options); }

  function initFirm() {
    if (!sessionStorage.getItem(FIRM_KEY)) return;  // portal.js sends the visitor to sign in
    var select = document.getElementById("a-product");
    firmCall(API + "/products").then(function (d) {
      d.products.forEach(function (p) {
        select.appendChild(el("option", { value: p.id, text: label(p, "name") + " · " + label(p.provider, "name") }));
      });
    }).catch(function (e) { showError(e.message); });
    var open = document.getElementById("a-open");
    open.addEventListener("change", function () { select.disabled = open.checked; });
    document.getElementById("apply-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      clearError();
      var need = {
        amount_cny: parseFloat(document.getElementById("a-amount").value),
        purpose: document.getElementById("a-purpose").value,
        tenor_months: parseInt(document.getElementById("a-tenor").value, 10)
      };
      var req = open.checked
        ? firmCall(firmPath("/needs"), { body: need })
        : firmCall(firmPath("/applications"), { body: Object.assign({ product_id: select.value }, need) });
      req.then(function (res) {
        var n = res.applications ? res.applications.length : 1;
        var ok = document.getElementById("apply-ok");
        ok.textContent = T.app_submitted_ok + (n > 1 ? " × " + n : "");
        ok.hidden = false;
        loadFirmList();
      }).catch(function (e) { showError(e.message); });
    });
    loadFirmList();
  }

  function loadFirmList() {
    var list = document.getElementById("app-list");
    firmCall(firmPath("/applications")).then(function (apps) {
      if (!apps.length) { list.replaceChildren(el("p", { class: "muted", text: T.app_none })); return; }
      list.replaceChildren.apply(list, apps.map(function (a) {
        var card = el("article", { class: "card app", id: "app-" + a.id }, [
          el("h3", {}, [label(a, "product_name") + " ", status(a.status)]),
          facts([[T.app_provider, a.provider_org], [T.app_amount, money(a.amount_cny)], [T.app_tenor, a.tenor_months],
            [T.app_created, when(a.created_at)]]),
          el("button", { type: "button", class: "secondary", "data-id": String(a.id), text: T.app_details })
        ]);
        card.querySelector("button").addEventListener("click", function () { showFirmDetail(card, a.id); });
        return card;
      }));
    }).catch(function (e) { showError(e.message); });
  }

  function showFirmDetail(card, id) {
    firmCall(firmPath("/applications/" + id)).then(function (app) {
      var old = card.querySelector(".app-detail");
      if (old) old.remove();
      var box = el("div", { class: "app-detail" }, [decisionBlock(app), historyBlock(app),
        el("p", { class: "muted", text: T.app_consent + ": " + app.consent_state })]);
      if (app.allowed_actions.indexOf("respond") >= 0) {
        var note = el("input", { id: "respond-note-" + id, type: "text", maxlength: "2000" });
        var form = el("form", { class: "form respond" }, [el("label", { for: "respond-note-" + id, text: T.app_note }), note,
          el("button", { type: "submit", text: T.app_respond })]);
        form.addEventListener("submit", function (ev) {
          ev.preventDefault();
          firmCall(firmPath("/applications/" + id + "/respond"), { body: { note: note.value || "-" } })
            .then(loadFirmList).catch(function (e) { showError(e.message); });
        });
        box.appendChild(form);
      }
      if (app.allowed_actions.indexOf("withdraw") >= 0) {
        var w = el("button", { type: "button", class: "secondary withdraw", text: T.app_withdraw });
        w.addEventListener("click", function () {
          firmCall(firmPath("/applications/" + id + "/withdraw"), { method: "POST" })
            .then(loadFirmList).catch(function (e) { showError(e.message); });
        });
        box.appendChild(w);
      }
      card.appendChild(box);
    }).catch(function (e) { showError(e.message); });
  }

  /* ------------------------------------------------------------------ provider console */
  function pcall(path, options) { return call(PKEY, path, options); }

  function initConsoleSignIn() {
    document.getElementById("console-signin-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      clearError();
      var key = document.getElementById("api-key").value.trim();
      fetch("/portal/api/whoami", { headers: { "X-API-Key": key }, credentials: "omit", cache: "no-store" })
        .then(function (r) { return r.json().then(function (d) { return { ok: r.ok, data: d }; }); })
        .then(function (res) {
          if (!res.ok) { showError(T.signin_bad); return; }
          if (res.data.role !== "bank" && res.data.role !== "insurer") { showError(T.app_console_not_provider); return; }
          sessionStorage.setItem(PKEY, key);
          sessionStorage.setItem(PORG, res.data.org);
          sessionStorage.setItem(PROLE, res.data.role);
          window.location.assign(CONSOLE + "/inbox");
        }).catch(function (e) { showError(e.message); });
    });
  }
  function requireProvider() {
    if (!sessionStorage.getItem(PKEY)) { window.location.replace(CONSOLE + "/"); return false; }
    document.getElementById("who").textContent = T.signed_in_as + ": " + sessionStorage.getItem(PORG);
    document.getElementById("sign-out").addEventListener("click", function () {
      [PKEY, PORG, PROLE].forEach(function (k) { sessionStorage.removeItem(k); });
      window.location.assign(CONSOLE + "/");
    });
    return true;
  }

  function initInbox() {
    pcall(API + "/provider/applications").then(function (apps) {
      var tbody = document.querySelector("#inbox-table tbody");
      if (!apps.length) { tbody.replaceChildren(el("tr", {}, [el("td", { colspan: "7", text: T.app_none })])); return; }
      tbody.replaceChildren.apply(tbody, apps.map(function (a) {
        var link = el("a", { href: CONSOLE + "/application?id=" + a.id + "&lang=" + LANG, text: "#" + a.id });
        return el("tr", { id: "inbox-" + a.id }, [el("td", {}, [link]), el("td", { text: (a.firm_name || "") + " " + a.firm_usc }),
          el("td", { text: label(a, "product_name") }), el("td", { text: money(a.amount_cny) }), el("td", { text: a.tenor_months }),
          el("td", {}, [status(a.status)]), el("td", { text: when(a.created_at) })]);
      }));
    }).catch(function (e) { showError(e.message); });
  }

  function frozenView(app) {
    var f = app.frozen, s = f.score, m = f.match, p = f.product;
    var head = el("section", { class: "card", id: "frozen-card" }, [
      el("h2", {}, ["#" + app.id + " " + (s.name || "") + " ", status(app.status)]),
      facts([[T.app_firm, app.firm_usc], [T.app_product, label(p, "name") + " v" + p.version], [T.app_amount, money(f.need.amount_cny)],
        [T.app_tenor, f.need.tenor_months], [T.app_purpose, f.need.purpose], [T.app_grade, s.grade], [T.app_score, s.score === null ? "–" : Math.round(s.score)],
        [T.app_pd, pct(s.pd)], [T.app_limit, money(m.limit_cny)], [T.app_price, m.price ? pct(m.price.rate) : "–"],
        [T.app_model_version, f.model_version], [T.app_as_of, f.as_of], [T.app_frozen_at, when(f.frozen_at)],
        [T.app_consent, app.consent_state]]),
      f.qualified_via_bundle ? el("p", { class: "badge ok", text: T.app_bundle_only }) : null,
      el("p", { class: "muted hash", text: "SHA-256 " + app.frozen_sha256 })
    ]);
    var reasons = el("section", { class: "card" }, [el("h3", { text: T.app_reasons }),
      el("ol", { class: "reasons" }, s.reasons.map(function (r) { return el("li", { text: r["text_" + LANG] || r.feature }); }))]);
    var trace = el("section", { class: "card" }, [el("h3", { text: T.app_trace }), el("div", { class: "table-wrap" }, [el("table", { id: "trace-table" }, [
      el("thead", {}, [el("tr", {}, [T.app_rule, T.app_actual, T.app_result].map(function (h) { return el("th", { scope: "col", text: h }); }))]),
      el("tbody", {}, m.trace.map(function (t) {
        return el("tr", {}, [el("td", { text: t.rule }), el("td", { text: shown(t.actual) }),
          el("td", { class: t.pass ? "pass" : "fail", text: t.pass ? T.app_pass : T.app_fail })]);
      }))
    ])])]);
    return [head, decisionBlock(app) ? el("section", { class: "card" }, [decisionBlock(app)]) : null, reasons, trace,
      el("section", { class: "card" }, [historyBlock(app)])];
  }

  function initApplication() {
    var id = new URLSearchParams(window.location.search).get("id");
    var box = document.getElementById("frozen");
    function load() {
      return pcall(API + "/provider/applications/" + encodeURIComponent(id)).then(function (app) {
        box.replaceChildren.apply(box, frozenView(app).filter(Boolean));
        setupForms(app);
      });
    }
    load().catch(function (e) { showError(e.message); });

    function setupForms(app) {
      var allowed = app.allowed_actions;
      var form = document.getElementById("decision-form");
      var decide = ["approve", "approve_with_conditions", "request_info", "decline"].filter(function (a) { return allowed.indexOf(a) >= 0; });
      form.hidden = !decide.length;
      var actionSel = document.getElementById("d-action");
      Array.prototype.forEach.call(actionSel.options, function (o) { o.disabled = decide.indexOf(o.value) < 0; });
      if (decide.length && decide.indexOf(actionSel.value) < 0) actionSel.value = decide[0];
      var p = app.frozen.product, ins = !!p.insurance;
      if (!ins) {
        document.getElementById("d-amount").value = app.frozen.need.amount_cny;
        document.getElementById("d-rate").value = app.frozen.match.price ? app.frozen.match.price.rate.toFixed(4) : "";
        document.getElementById("d-tenor").value = app.frozen.need.tenor_months;
      } else {
        document.getElementById("d-cover").value = p.insurance.cover_default;
        document.getElementById("d-days").value = Math.min(90, p.insurance.max_credit_days);
        document.getElementById("d-limit").value = Math.round(app.frozen.need.amount_cny / 7.1);
      }
      var reasons = document.getElementById("d-reasons");
      reasons.replaceChildren(el("legend", { text: T.app_decline_reasons }));
      app.reason_options.forEach(function (o, i) {
        reasons.appendChild(el("div", { class: "check" }, [el("input", { type: "checkbox", id: "reason-" + i, value: o.code }),
          el("label", { for: "reason-" + i, text: o[LANG] })]));
      });
      var info = document.getElementById("d-information");
      if (info.children.length <= 1) {
        ["financial_statements", "export_contracts", "tax_records", "bank_statements", "other"].forEach(function (c) {
          info.appendChild(el("div", { class: "check" }, [el("input", { type: "checkbox", id: "info-" + c, value: c }),
            el("label", { for: "info-" + c, text: T["app_info_" + c] })]));
        });
        var cond = document.getElementById("d-condition");
        ["assign_credit_insurance", "guarantee", "collateral", "documents"].forEach(function (c) {
          cond.appendChild(el("option", { value: c, text: T["app_condition_" + c] }));
        });
      }
      function sync() {
        var a = actionSel.value, approving = a === "approve" || a === "approve_with_conditions";
        document.getElementById("d-terms-fin").hidden = !approving || ins;
        document.getElementById("d-terms-ins").hidden = !approving || !ins;
        document.getElementById("d-conditions").hidden = a !== "approve_with_conditions";
        info.hidden = a !== "request_info";
        reasons.hidden = a !== "decline";
      }
      actionSel.onchange = sync;
      sync();
      form.onsubmit = function (ev) {
        ev.preventDefault();
        clearError();
        var a = actionSel.value, req = { action: a, note: document.getElementById("d-note").value };
        if (a === "approve" || a === "approve_with_conditions") {
          req.terms = ins
            ? { cover: parseFloat(document.getElementById("d-cover").value), credit_days: parseInt(document.getElementById("d-days").value, 10),
                limit_usd: parseFloat(document.getElementById("d-limit").value) }
            : { amount_cny: parseFloat(document.getElementById("d-amount").value), rate: parseFloat(document.getElementById("d-rate").value),
                tenor_months: parseFloat(document.getElementById("d-tenor").value) };
        }
        if (a === "approve_with_conditions") {
          var code = document.getElementById("d-condition").value;
          req.conditions = [code === "assign_credit_insurance"
            ? { code: code, insurance_product_id: document.getElementById("d-ins-product").value } : { code: code }];
        }
        if (a === "request_info") req.information = Array.prototype.map.call(info.querySelectorAll("input:checked"), function (x) { return x.value; });
        if (a === "decline") req.reasons = Array.prototype.map.call(reasons.querySelectorAll("input:checked"), function (x) { return x.value; });
        pcall(API + "/provider/applications/" + id + "/decision", { body: req }).then(load).catch(function (e) { showError(e.message); });
      };
      var today = new Date().toISOString().slice(0, 10);
      var disb = document.getElementById("disburse-form");
      disb.hidden = allowed.indexOf("disburse") < 0;
      document.getElementById("o-date").value = today;
      document.getElementById("o-amount").value = app.approved_amount_cny || "";
      disb.onsubmit = function (ev) {
        ev.preventDefault();
        clearError();
        pcall(API + "/provider/applications/" + id + "/disbursement", { body: {
          date: document.getElementById("o-date").value, amount_cny: parseFloat(document.getElementById("o-amount").value) } })
          .then(load).catch(function (e) { showError(e.message); });
      };
      var rep = document.getElementById("repay-form");
      rep.hidden = app.status !== "disbursed";
      document.getElementById("r-date").value = today;
      rep.onsubmit = function (ev) {
        ev.preventDefault();
        clearError();
        pcall(API + "/provider/applications/" + id + "/repayments", { body: {
          date: document.getElementById("r-date").value, status: document.getElementById("r-status").value,
          days_past_due: parseInt(document.getElementById("r-dpd").value, 10) || 0 } })
          .then(load).catch(function (e) { showError(e.message); });
      };
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var page = body.dataset.page;
    if (page === "applications") { initFirm(); return; }
    if (page === "console-signin") { initConsoleSignIn(); return; }
    if (!requireProvider()) return;
    if (page === "console-inbox") initInbox();
    if (page === "console-application") initApplication();
  });
})();
