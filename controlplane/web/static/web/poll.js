// Live updates of a running execution's page: poll its small JSON endpoint and reload the page
// when the run has moved on (a new event), stop once it has finished. No library, no CDN.
(function () {
  var el = document.querySelector("[data-poll-url]");
  if (!el) return;
  var url = el.getAttribute("data-poll-url");
  var seen = el.getAttribute("data-poll-seq");
  var every = parseInt(el.getAttribute("data-poll-ms") || "1500", 10);
  function tick() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (state) {
        if (!state) return setTimeout(tick, every * 2);
        if (String(state.last_seq) !== seen) return window.location.reload();
        if (!state.finished) setTimeout(tick, every);
      })
      .catch(function () { setTimeout(tick, every * 2); });
  }
  setTimeout(tick, every);
})();
