// haven console: refreshes each element with data-refresh="URL" every
// 2 seconds by fetching its server-rendered HTML fragment. No library,
// nothing fetched from elsewhere. Without JavaScript the pages still work:
// reload to refresh.
"use strict";
(function () {
  var every = 2000;
  function refresh(el) {
    fetch(el.getAttribute("data-refresh"), {credentials: "same-origin", cache: "no-store"})
      .then(function (r) {
        if (r.status === 401) { location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) { if (html !== null) { el.innerHTML = html; } })
      .catch(function () {})
      .then(function () { setTimeout(function () { refresh(el); }, every); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var els = document.querySelectorAll("[data-refresh]");
    for (var i = 0; i < els.length; i++) {
      (function (el) { setTimeout(function () { refresh(el); }, every); })(els[i]);
    }
  });
})();
