// Fragments: an element with data-fragment="<url>" shows the HTML at that URL. It is fetched when
// the page loads and again whenever live.js swaps in fresh page content (after a change), so a
// panel served by another part of the console stays as live as the page around it.
(function () {
  "use strict";
  if (!window.fetch || !window.MutationObserver) return;

  var cache = {};

  function load(element) {
    var url = element.getAttribute("data-fragment");
    if (!url) return;
    // Show the last copy at once, so a refresh does not flash an empty panel.
    if (cache[url] !== undefined && !element.hasAttribute("data-loaded")) element.innerHTML = cache[url];
    element.setAttribute("data-loaded", "");
    fetch(url, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (response) { return response.ok && !response.redirected ? response.text() : null; })
      .then(function (html) {
        if (html === null) return;
        cache[url] = html;
        element.innerHTML = html;
      })
      .catch(function () { /* the next change tries again */ });
  }

  function scan() {
    var found = document.querySelectorAll("[data-fragment]");
    for (var i = 0; i < found.length; i++) load(found[i]);
  }

  var main = document.querySelector("main");
  if (main) new MutationObserver(scan).observe(main, { childList: true });
  scan();
})();
