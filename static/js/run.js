// Live run page: polls the run's progress JSON and updates the bar, ETA, loss curve,
// sample grid and log until the run finishes. No inline scripts (CSP-friendly).
(function () {
  "use strict";
  const root = document.getElementById("run");
  if (!root) return;
  const progressUrl = root.dataset.progressUrl;
  const sampleUrl = root.dataset.sampleUrl;
  let lastSample = null;

  function drawLoss(points) {
    const line = document.querySelector("#loss-curve polyline");
    const label = document.getElementById("loss-last");
    if (!line || !points || points.length === 0) return;
    const steps = points.map((p) => p[0]);
    const losses = points.map((p) => p[1]);
    const x0 = Math.min(...steps), x1 = Math.max(...steps);
    const y0 = Math.min(...losses), y1 = Math.max(...losses);
    const sx = (s) => (x1 === x0 ? 0 : ((s - x0) / (x1 - x0)) * 400);
    const sy = (l) => (y1 === y0 ? 80 : 155 - ((l - y0) / (y1 - y0)) * 150);
    line.setAttribute("points", points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" "));
    label.textContent = `step ${steps[steps.length - 1]}: loss ${losses[losses.length - 1].toFixed(4)} (min ${y0.toFixed(4)})`;
  }

  function render(p) {
    const status = document.getElementById("run-status");
    status.textContent = p.status_label;
    status.className = `status status-${p.status}`;
    document.getElementById("run-steps").textContent = `${p.step} / ${p.total_steps}`;
    document.getElementById("run-eta").textContent = p.eta_seconds ? `${Math.round(p.eta_seconds)} s` : "–";
    document.getElementById("run-worker").textContent = p.worker_host || "–";
    document.getElementById("run-bar").style.width = `${p.percent}%`;
    if (p.peak_gpu_memory_mb) {
      document.getElementById("run-gpu-memory").textContent = ` · peak GPU memory ${Math.round(p.peak_gpu_memory_mb)} MiB`;
    }
    const log = document.getElementById("run-log");
    log.textContent = p.log_tail;
    log.scrollTop = log.scrollHeight;
    const error = document.getElementById("run-error");
    error.textContent = p.error;
    error.hidden = !p.error;
    drawLoss(p.loss_history);
    if (p.sample_version && p.sample_version !== lastSample) {
      lastSample = p.sample_version;
      const img = document.getElementById("run-sample");
      img.src = `${sampleUrl}?v=${encodeURIComponent(p.sample_version)}`;
      img.hidden = false;
    }
  }

  async function poll() {
    try {
      const response = await fetch(progressUrl, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) {
        const p = await response.json();
        render(p);
        // Result sections (e.g. an evaluation's tables) are drawn by the server: reload once.
        if (p.finished && root.dataset.reloadOnFinish === "true") window.location.reload();
        if (p.finished) return;
      }
    } catch (e) {
      // the server may be restarting; try again
    }
    window.setTimeout(poll, 2000);
  }

  poll();
})();
