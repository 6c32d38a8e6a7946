// Lipwa pages: live payment progress (EventSource, polling fallback), the network hint,
// printing. No framework, no build step; every page works without this file.
(function () {
  "use strict";

  function progress(box) {
    var text = document.getElementById("progress-text");
    var done = false;
    function show(view) {
      if (done || !view) return;
      if (text && view.message) text.textContent = view.message;
      if (view.final) {
        done = true;
        // The server renders the outcome (receipt, plain-language failure, retry).
        window.location.reload();
      }
    }
    function poll() {
      var delay = 1500;
      function tick() {
        if (done) return;
        fetch(box.dataset.status, { headers: { Accept: "application/json" }, cache: "no-store" })
          .then(function (r) { return r.ok ? r.json() : null; })
          .then(show)
          .catch(function () { delay = Math.min(delay * 2, 10000); })
          .then(function () { if (!done) setTimeout(tick, delay); });
      }
      tick();
    }
    if (window.EventSource && box.dataset.events) {
      var source = new EventSource(box.dataset.events);
      var failures = 0;
      source.onmessage = function (e) {
        failures = 0;
        try { show(JSON.parse(e.data)); } catch (err) { /* ignore a torn message */ }
        if (done) source.close();
      };
      source.onerror = function () {
        failures += 1;
        if (done) { source.close(); return; }
        if (failures >= 2 || source.readyState === EventSource.CLOSED) {
          source.close();
          poll();
        }
      };
    } else {
      poll();
    }
  }

  function networkHint(form) {
    var input = form.querySelector("input[name=phone]");
    var out = document.getElementById("network");
    if (!input || !out) return;
    var timer = null;
    var last = "";
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var value = input.value.trim();
        if (value === last) return;
        last = value;
        if (value.replace(/\D/g, "").length < 9) { out.textContent = ""; return; }
        var url = form.dataset.networkUrl + "?phone=" + encodeURIComponent(value);
        fetch(url, { headers: { Accept: "application/json" } })
          .then(function (r) { return r.json(); })
          .then(function (data) {
            if (input.value.trim() !== value) return;
            out.textContent = data.label || "";
            out.className = "network" + (data.supported === false ? " unsupported" : "");
          })
          .catch(function () { out.textContent = ""; });
      }, 250);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("progress");
    if (box) progress(box);
    var form = document.querySelector("form[data-network-url]");
    if (form) networkHint(form);
    var button = document.querySelector("[data-print]");
    if (button) {
      button.hidden = false;
      button.addEventListener("click", function () { window.print(); });
    }
    // One submit per form: a double tap must not send two prompts (the server also
    // deduplicates by the form's attempt nonce).
    Array.prototype.forEach.call(document.querySelectorAll("form[method=post]"), function (f) {
      f.addEventListener("submit", function () {
        var b = f.querySelector("button[type=submit]");
        if (b) setTimeout(function () { b.disabled = true; }, 0);
      });
    });
  });
})();
