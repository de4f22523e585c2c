// The reading page: autosave per case, reading time, keyboard shortcuts and zoom.
// Saves go to the same URL as the form (POST with the CSRF token); the server upserts, so a
// repeated save is harmless. The time sent is this case's running total, never a delta.
(function () {
  "use strict";
  const form = document.getElementById("answer-form");
  if (!form) return;
  const editable = !form.querySelector("fieldset[disabled]");
  const statusText = document.getElementById("save-status");
  const readingInput = document.getElementById("reading-ms");
  const progress = document.getElementById("progress");
  const progressText = document.getElementById("progress-text");
  const submitButton = document.getElementById("submit-study");

  // --- Reading time: only while the page is visible. ---
  const base = Number(form.dataset.readingMs || 0);
  let shown = 0;
  let visibleSince = document.hidden ? null : performance.now();
  function readingMs() {
    const current = visibleSince === null ? 0 : performance.now() - visibleSince;
    return Math.round(base + shown + current);
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      if (visibleSince !== null) shown += performance.now() - visibleSince;
      visibleSince = null;
      save();
    } else {
      visibleSince = performance.now();
    }
  });

  // --- Autosave. ---
  let timer = null;
  function save() {
    if (!editable) return Promise.resolve();
    clearTimeout(timer);
    readingInput.value = readingMs();
    const body = new FormData(form);
    statusText.textContent = "Saving…";
    return fetch(form.action, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
    })
      .then(function (response) {
        return response.json().then(function (data) { return { ok: response.ok, data: data }; });
      })
      .then(function (result) {
        if (result.ok && result.data.saved) {
          statusText.textContent = "Saved";
          progress.value = result.data.answered;
          progressText.textContent = result.data.answered + " of " + result.data.total + " answered";
          submitButton.disabled = result.data.answered < result.data.total;
        } else {
          statusText.textContent = result.data.error || "Not saved: please check the answers.";
        }
      })
      .catch(function () { statusText.textContent = "Not saved (no connection); it will retry on the next change."; });
  }
  function saveSoon() {
    clearTimeout(timer);
    timer = setTimeout(save, 300);
  }
  form.addEventListener("change", saveSoon);
  form.addEventListener("input", function (event) {
    if (event.target.tagName === "TEXTAREA" || event.target.type === "number") saveSoon();
  });
  form.addEventListener("submit", function () { readingInput.value = readingMs(); });

  // --- Zoom: the image is scaled inside a scrolling viewer (scroll or drag to pan). ---
  const viewer = document.getElementById("viewer");
  const image = document.getElementById("case-image");
  const zoomLevel = document.getElementById("zoom-level");
  const steps = [1, 1.5, 2, 3, 4, 6];
  let zoom = 0;
  function setZoom(index) {
    zoom = Math.max(0, Math.min(steps.length - 1, index));
    image.style.width = steps[zoom] * 100 + "%";
    zoomLevel.textContent = steps[zoom] * 100 + "%";
  }
  document.querySelectorAll("[data-zoom]").forEach(function (button) {
    button.addEventListener("click", function () {
      const how = button.dataset.zoom;
      setZoom(how === "in" ? zoom + 1 : how === "out" ? zoom - 1 : 0);
    });
  });
  image.addEventListener("click", function () { setZoom(zoom === 0 ? 2 : 0); });
  viewer.addEventListener("wheel", function (event) {
    if (!event.ctrlKey) return;
    event.preventDefault();
    setZoom(event.deltaY < 0 ? zoom + 1 : zoom - 1);
  }, { passive: false });

  // --- Keyboard shortcuts. ---
  function pick(name, value) {
    const input = form.querySelector('input[name="' + name + '"][value="' + value + '"]');
    if (!input || input.disabled) return;
    input.checked = true;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }
  function toggle(name) {
    const checked = form.querySelector('input[name="' + name + '"]:checked');
    pick(name, checked && checked.value === "True" ? "False" : "True");
  }
  function go(id) {
    const target = document.getElementById(id);
    if (target) target.click();
  }
  const toggles = { a: "asymmetry_realistic", b: "border_realistic", c: "colour_realistic", d: "diameter_realistic" };
  document.addEventListener("keydown", function (event) {
    const target = event.target;
    if (target.tagName === "TEXTAREA" || (target.tagName === "INPUT" && target.type !== "radio")) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const digit = /^Digit([1-7])$/.exec(event.code);
    const key = event.key.toLowerCase();
    if (digit && event.shiftKey) pick("realism", digit[1]);
    else if (digit && Number(digit[1]) <= 5) pick("confidence", digit[1]);
    else if (key === "r") pick("judgement", "real");
    else if (key === "s") pick("judgement", "synthetic");
    else if (toggles[key]) toggle(toggles[key]);
    else if (key === "n") go("next-case");
    else if (key === "p") go("previous-case");
    else if (key === "+" || key === "=") setZoom(zoom + 1);
    else if (key === "-") setZoom(zoom - 1);
    else if (key === "0") setZoom(0);
    else return;
    event.preventDefault();
  });
})();
