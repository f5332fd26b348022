// Live refresh for the console: when another person changes something, reload the content
// of <main> in place, unless the user is typing in a form there.
(function () {
  "use strict";
  if (!window.EventSource || !window.fetch || !window.DOMParser) return;

  var dirty = false;
  var pending = false;
  var timer = null;
  var notice = document.getElementById("live-notice");

  function main() { return document.querySelector("main"); }

  // A field counts as in use when it has focus or has been edited since the last swap.
  document.addEventListener("input", function (event) {
    if (main() && main().contains(event.target)) dirty = true;
  }, true);
  document.addEventListener("submit", function () { dirty = false; }, true);

  function busy() {
    var m = main();
    var active = document.activeElement;
    if (!m) return true;
    if (dirty) return true;
    return !!(active && m.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName));
  }

  function showNotice() {
    if (!notice) return;
    notice.hidden = false;
    notice.textContent = "This page has changed. ";
    var button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-small";
    button.textContent = "Show changes";
    button.addEventListener("click", function () { dirty = false; notice.hidden = true; refresh(); });
    notice.appendChild(button);
  }

  function flash(text) {
    if (!notice) return;
    notice.hidden = false;
    notice.textContent = text;
    setTimeout(function () { if (notice.textContent === text) notice.hidden = true; }, 2500);
  }

  function refresh() {
    if (busy()) { pending = true; showNotice(); return; }
    pending = false;
    fetch(window.location.href, { headers: { "Accept": "text/html", "X-Live-Refresh": "1" }, credentials: "same-origin" })
      .then(function (response) {
        if (response.redirected || !response.ok) return null;
        return response.text();
      })
      .then(function (html) {
        if (html === null || html === undefined || busy()) { if (html) { pending = true; showNotice(); } return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("main");
        var current = main();
        if (!fresh || !current) return;
        var scrollY = window.scrollY;
        current.innerHTML = fresh.innerHTML;
        window.scrollTo(0, scrollY);
        var banner = document.getElementById("db-warning");
        var freshBanner = doc.getElementById("db-warning");
        if (banner && !freshBanner) banner.remove();
        if (!banner && freshBanner) document.body.insertBefore(freshBanner, current);
        flash("Updated");
      })
      .catch(function () { /* the next change event tries again */ });
  }

  function schedule() {
    // Several changes in quick succession produce one refresh.
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  }

  var source = new EventSource("/console/events");
  source.addEventListener("change", function (event) {
    var topics = [];
    try { topics = JSON.parse(event.data); } catch (e) { topics = []; }
    // A new snapshot alone says nothing the console shows.
    if (topics.length && topics.every(function (t) { return t === "snapshot"; })) return;
    // A page that names its topics (data-live-topics="incident:<id> …") refreshes only on those.
    var scope = main() && main().querySelector("[data-live-topics]");
    if (scope && topics.length) {
      var wanted = scope.getAttribute("data-live-topics").split(/\s+/);
      if (!topics.some(function (t) { return wanted.indexOf(t) >= 0; })) return;
    }
    schedule();
  });
  source.addEventListener("error", function () { /* EventSource reconnects by itself */ });

  // Once the user leaves the form they were typing in, apply what they missed.
  document.addEventListener("focusout", function () {
    setTimeout(function () { if (pending && !busy()) { if (notice) notice.hidden = true; refresh(); } }, 100);
  });
})();
