// Keeps a submission's page current without reloading it: every 2 s, while the submission has not
// finished, the server renders the live part of the page again and it replaces the old one.
(function () {
  "use strict";
  var INTERVAL_MS = 2000;
  var box;

  function finished(element) { return element.getAttribute("data-finished") === "1"; }

  function poll() {
    if (finished(box)) return;
    fetch(box.getAttribute("data-url"), { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        box.setAttribute("data-finished", response.headers.get("X-M2D-Finished") === "1" ? "1" : "0");
        return response.text();
      })
      .then(function (html) { box.innerHTML = html; })
      .catch(function () { /* a missed beat: the next one tries again */ })
      .then(function () { if (!finished(box)) window.setTimeout(poll, INTERVAL_MS); });
  }

  function start() {
    box = document.getElementById("live");
    if (box) window.setTimeout(poll, INTERVAL_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
