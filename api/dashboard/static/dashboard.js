// Abaxus dashboard: the one script. Rewrites each <time> into the viewer's zone, keeping UTC in its title.
(function () {
  "use strict";
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  var full = new Intl.DateTimeFormat(undefined, {year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"});
  var day = new Intl.DateTimeFormat(undefined, {year: "numeric", month: "short", day: "numeric"});
  function localise() {
    var nodes = document.querySelectorAll("time[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      var when = new Date(node.getAttribute("datetime"));
      if (isNaN(when.getTime())) { continue; }
      // A date stands for a UTC calendar day (billing periods follow UTC): show that day, not its local shift.
      node.textContent = node.getAttribute("data-style") === "date"
        ? day.format(new Date(when.getUTCFullYear(), when.getUTCMonth(), when.getUTCDate()))
        : full.format(when);
      node.setAttribute("title", node.getAttribute("title") + (zone ? " (shown in " + zone + ")" : ""));
    }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", localise); } else { localise(); }
})();
