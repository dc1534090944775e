// offboard console: live progress on a batch page, without reloading it.
// Polls the batch's progress every 2 s and updates the status in place.
(function () {
  "use strict";
  var status = document.getElementById("status");
  if (!status) { return; }
  var url = status.getAttribute("data-progress-url");
  var finished = ["completed", "completed_with_failures", "cancelled"];
  // A preview still being planned shows its plan (and its buttons) once
  // planned: the one time the page is loaded again.
  var planning = status.getAttribute("data-planning") === "true";
  function text(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = value; }
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (p) {
        if (!p) { return; }
        text("state", p.state);
        text("counts", p.counts);
        text("progress-text", p.percent + "%");
        text("eta", p.eta || "");
        var bar = document.getElementById("progress");
        if (bar) { bar.value = p.percent; }
        if (planning && p.state === "held" && p.percent >= 100) { window.location.reload(); return; }
        // A batch waiting for a person does not move: polling it would keep
        // an unattended session alive past its idle timeout.
        var waiting = !planning && (p.state === "halted" || p.state === "held");
        if (finished.indexOf(p.state) < 0 && !waiting) { window.setTimeout(poll, 2000); }
      })
      .catch(function () { window.setTimeout(poll, 2000); });
  }
  window.setTimeout(poll, 2000);
}());
