// The workbench's little script: reveal one image at a time (and blur it again on leaving),
// keyboard shortcuts in the queue, the break reminder, the browser's time zone for forms.
// Plain JavaScript, no library: the pages work without it, only less conveniently.
"use strict";

(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // -- reveal and blur again ---------------------------------------------------------------------
  function reblur(img) {
    if (!img || img.dataset.revealed !== "true") return;
    img.src = img.dataset.blurredSrc;
    img.dataset.revealed = "false";
    img.classList.remove("revealed");
    const button = document.getElementById("reveal-" + img.id);
    if (button) button.setAttribute("aria-pressed", "false");
  }

  // The original as a data: URL (the CSP allows img-src 'self' data:), kept in this one element only.
  function asDataUrl(blob) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
  }

  function reblurAll(root) {
    (root || document).querySelectorAll("img.face").forEach(reblur);
  }

  async function reveal(img) {
    if (!img || img.dataset.revealed === "true") return;
    const item = img.closest(".item");
    reblurAll(document);  // one image at a time
    const body = new URLSearchParams({ csrf_token: csrf() });
    const answer = await fetch(img.dataset.revealUrl, {
      method: "POST", body: body, credentials: "same-origin", cache: "no-store",
    });
    if (!answer.ok) {
      img.classList.add("reveal-refused");
      return;
    }
    const original = await asDataUrl(await answer.blob());
    if (item && !item.contains(document.activeElement) && document.activeElement !== document.body) return;
    img.src = original;
    img.dataset.revealed = "true";
    img.classList.add("revealed");
    const button = document.getElementById("reveal-" + img.id);
    if (button) button.setAttribute("aria-pressed", "true");
    if (item && !item.contains(document.activeElement)) item.focus();
  }

  function toggle(img) {
    if (!img) return;
    if (img.dataset.revealed === "true") reblur(img); else reveal(img);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.reveal");
    if (!button) return;
    event.preventDefault();
    toggle(document.getElementById(button.dataset.image));
  });

  // Leaving an item (focus or pointer) blurs its images again; so does leaving the window.
  document.addEventListener("focusout", (event) => {
    const item = event.target.closest && event.target.closest(".item");
    if (item && !(event.relatedTarget && item.contains(event.relatedTarget))) reblurAll(item);
  });
  document.addEventListener("mouseout", (event) => {
    const figure = event.target.closest && event.target.closest(".face-frame");
    if (figure && !(event.relatedTarget && figure.contains(event.relatedTarget))) reblurAll(figure);
  });
  window.addEventListener("blur", () => reblurAll(document));
  document.addEventListener("visibilitychange", () => { if (document.hidden) reblurAll(document); });
  window.addEventListener("pagehide", () => reblurAll(document));

  // -- copy a notice's text (for a host's web form) -------------------------------------------------
  document.addEventListener("click", async (event) => {
    const button = event.target.closest && event.target.closest("button.copy");
    if (!button) return;
    event.preventDefault();
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    try {
      await navigator.clipboard.writeText(source.value);
    } catch (_error) {  // no clipboard permission (or plain http elsewhere than localhost): select it instead
      source.focus();
      source.select();
      return;
    }
    button.dataset.done = "true";
    if (button.dataset.copied) button.textContent = button.dataset.copied;
  });

  // -- keyboard ----------------------------------------------------------------------------------
  const items = () => Array.from(document.querySelectorAll("article.item"));
  function current() {
    const active = document.activeElement;
    return (active && active.closest && active.closest("article.item")) || items()[0] || null;
  }
  function move(step) {
    const all = items();
    if (!all.length) return;
    const at = all.indexOf(current());
    const next = all[Math.min(all.length - 1, Math.max(0, at + step))];
    next.focus();
    next.scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const typing = event.target.closest && event.target.closest("input, textarea, select");
    if (typing) {
      if (event.key === "Escape") {  // back to the item, so its shortcuts work again
        const owner = event.target.closest("article.item");
        if (owner) owner.focus(); else event.target.blur();
      }
      return;
    }
    const item = current();
    switch (event.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "v": if (item) toggle(item.querySelector("img.face")); break;
      case "Escape": reblurAll(document); break;
      case "n": {
        const note = item && item.querySelector("textarea[name=note]");
        if (note) { event.preventDefault(); note.focus(); }
        break;
      }
      case "c": case "r": case "u": {
        const button = item && item.querySelector('form.decision button[data-key="' + event.key + '"]');
        if (button) { event.preventDefault(); button.click(); }
        break;
      }
      default: return;
    }
  });

  // -- on load -----------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("input.tz-offset").forEach((input) => {
      input.value = String(new Date().getTimezoneOffset());
    });

    const page = document.body.dataset.page;
    if (page === "queue" || page === "match") {
      const first = items()[0];
      if (first) first.focus({ preventScroll: true });
    }

    // Withdrawal: the button waits for the case id typed exactly.
    const withdraw = document.getElementById("withdraw-form");
    if (withdraw) {
      const typed = withdraw.querySelector("input[name=confirm]");
      const submit = withdraw.querySelector("button[type=submit]");
      const check = () => { submit.disabled = typed.value.trim() !== withdraw.dataset.caseId; };
      typed.addEventListener("input", check);
      check();
    }

    // The break reminder: after the organisation's minutes of continuous review.
    const minutes = Number(document.body.dataset.breakMinutes || 0);
    const started = Date.parse(document.body.dataset.reviewStarted || "");
    const banner = document.getElementById("break-banner");
    if (banner && minutes > 0 && !Number.isNaN(started)) {
      const show = () => banner.classList.remove("hidden");
      const due = started + minutes * 60 * 1000 - Date.now();
      if (due <= 0) show(); else window.setTimeout(show, due);
      const later = document.getElementById("break-later");
      if (later) later.addEventListener("click", () => {
        banner.classList.add("hidden");
        window.setTimeout(show, 10 * 60 * 1000);
      });
    }
  });
})();
