/* crisisdesk status page: local times, and live updates over Server-Sent Events.
   The page works fully without this script; where /status/live does not exist (a static
   export) the script gives up after the first failed connection. */
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main) return;

  var formatter = null;
  try {
    formatter = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", timeZoneName: "short"
    });
  } catch (e) { formatter = null; }

  function localise(root) {
    if (!formatter) return;
    var times = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var el = times[i];
      if (el.getAttribute("data-localised")) continue;
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) continue;
      el.title = el.textContent;
      el.textContent = formatter.format(when);
      el.setAttribute("data-localised", "1");
    }
  }

  var current = main.innerHTML;
  localise(document);

  // Clean days carry no tooltip in the markup (it keeps the page small); name their date on hover.
  main.addEventListener("mouseover", function (event) {
    var bar = event.target;
    if (bar.tagName !== "I" || bar.title || !bar.parentNode.getAttribute) return;
    var last = bar.parentNode.getAttribute("data-last-day");
    if (!last) return;
    var index = Array.prototype.indexOf.call(bar.parentNode.children, bar);
    var day = new Date(last + "T00:00:00Z");
    day.setUTCDate(day.getUTCDate() - (bar.parentNode.children.length - 1 - index));
    bar.title = day.toISOString().slice(0, 10) + ": no downtime recorded";
  });

  if (!("EventSource" in window) || !window.fetch || !window.DOMParser) return;

  function closedGroups() {
    var closed = {};
    var groups = main.querySelectorAll("details.group[id]");
    for (var i = 0; i < groups.length; i++) if (!groups[i].open) closed[groups[i].id] = true;
    return closed;
  }

  var refreshing = false, again = false;
  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(location.pathname, { cache: "no-cache", credentials: "omit" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        if (!fresh || fresh.innerHTML === current) return;
        var closed = closedGroups();
        current = fresh.innerHTML;
        main.innerHTML = current;
        for (var id in closed) {
          var group = document.getElementById(id);
          if (group) group.open = false;
        }
        if (doc.title) document.title = doc.title;
        localise(main);
        document.documentElement.setAttribute("data-live-version", String(lastVersion));
      })
      .catch(function () { /* offline for a moment: the next event retries */ })
      .then(function () {
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
  }

  var lastVersion = null, opened = false;
  var source = new EventSource("/status/live");
  source.addEventListener("open", function () { opened = true; });
  source.addEventListener("snapshot", function (event) {
    if (event.data === lastVersion) return;
    lastVersion = event.data;
    document.documentElement.setAttribute("data-live", "on");
    // The first event may already be newer than the page that was loaded: check once.
    refresh();
  });
  source.addEventListener("error", function () {
    if (!opened) source.close(); // no live endpoint here (a static copy): stay quiet
  });
})();
