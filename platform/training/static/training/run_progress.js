// The run page's poll (a static file: the Content-Security-Policy allows no inline script).
// While the run or its evaluation may change, refresh the numbers every 2 s; reload the
// page when a status changes so that it shows the new state. The log is only on the page
// (and in the JSON) for maintainers.
(function () {
  const script = document.currentScript;
  const url = script.dataset.url;
  const seen = script.dataset.seen;
  const set = (id, text) => { const el = document.getElementById(id); if (el) el.textContent = text; };
  async function poll() {
    try {
      const p = await (await fetch(url, {headers: {"Accept": "application/json"}})).json();
      set("run-status", p.status_label); set("run-step", p.step); set("run-total", p.total_steps);
      set("run-attempt", p.attempt);
      if ("log_tail" in p) set("run-log", p.log_tail || "(nothing yet)");
      set("run-loss", p.last_loss === null ? "—" : p.last_loss.toFixed(4));
      set("run-eta", p.eta_seconds === null ? "—" : p.eta_seconds + " s");
      document.getElementById("run-bar").value = p.percent;
      if (p.status + "/" + (p.evaluation || "") !== seen) { window.location.reload(); return; }
      if (!p.watch) return;
    } catch (e) { /* the next poll tries again */ }
    setTimeout(poll, 2000);
  }
  setTimeout(poll, 2000);
})();
