/* crisisdesk status widget. Embed with:
   <script src="https://status.example.com/widget.js" async></script>
   It shows the current overall status where the script tag is, or inside an element with
   the attribute data-crisisdesk-status if the page has one. */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = __CRISISDESK_BASE_URL__;
  if (script && script.src) base = script.src.replace(/\/widget\.js(\?.*)?$/, "");
  var colours = { none: "#15803d", minor: "#a16207", major: "#c2410c", critical: "#b91c1c", maintenance: "#1d4ed8" };

  function mount() {
    var host = document.querySelector("[data-crisisdesk-status]");
    if (!host) {
      host = document.createElement("span");
      if (script && script.parentNode) script.parentNode.insertBefore(host, script.nextSibling);
      else document.body.appendChild(host);
    }
    var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
    var link = document.createElement("a");
    link.href = base + "/";
    link.rel = "noopener";
    link.target = "_blank";
    link.setAttribute("style", "display:inline-flex;align-items:center;gap:8px;padding:6px 12px;border:1px solid #e5e7eb;" +
      "border-radius:999px;background:#fff;color:#111827;text-decoration:none;" +
      "font:600 14px/1.2 system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif");
    var dot = document.createElement("span");
    dot.setAttribute("aria-hidden", "true");
    dot.setAttribute("style", "width:10px;height:10px;border-radius:50%;background:#9ca3af;flex:none");
    var text = document.createElement("span");
    text.textContent = "Checking status…";
    link.appendChild(dot);
    link.appendChild(text);
    root.appendChild(link);

    fetch(base + "/api/v2/status.json", { credentials: "omit" })
      .then(function (response) { if (!response.ok) throw new Error(String(response.status)); return response.json(); })
      .then(function (data) {
        var status = data.status || {};
        var tone = status.description === "Service Under Maintenance" ? "maintenance" : status.indicator;
        text.textContent = status.description || "Status unavailable";
        dot.style.background = colours[tone] || "#9ca3af";
        link.title = (data.page && data.page.name ? data.page.name + ": " : "") + text.textContent;
      })
      .catch(function () { text.textContent = "Status page"; });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount);
  else mount();
})();
