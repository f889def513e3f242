"use strict";
// Filters of the vl review page: by bin, by reason, by Q/A validity. Cards are server-rendered; this only
// hides and shows them, so the page is usable before (and without) the script.
(function () {
  var cards = Array.prototype.slice.call(document.querySelectorAll("article.card"));
  var groups = Array.prototype.slice.call(document.querySelectorAll("section.dupgroup"));
  var shown = document.getElementById("shown");
  var reason = document.getElementById("reason");
  var state = { bin: "", validity: "", reason: "" };
  var parsed = cards.map(function (card) {
    return {
      card: card,
      bin: card.getAttribute("data-bin"),
      reasons: (card.getAttribute("data-r") || "").split(" "),
      validity: (card.getAttribute("data-v") || "").split(" ")
    };
  });

  function matches(p) {
    return (!state.bin || p.bin === state.bin) &&
      (!state.reason || p.reasons.indexOf(state.reason) >= 0) &&
      (!state.validity || p.validity.indexOf(state.validity) >= 0);
  }

  function apply() {
    var n = 0;
    parsed.forEach(function (p) {
      var ok = matches(p);
      p.card.hidden = !ok;
      if (ok) n += 1;
    });
    groups.forEach(function (g) {
      g.hidden = !g.querySelector("article.card:not([hidden])");
    });
    document.querySelectorAll("button[data-filter]").forEach(function (b) {
      var on = state[b.getAttribute("data-filter")] === b.getAttribute("data-value");
      b.setAttribute("aria-pressed", on ? "true" : "false");
    });
    reason.value = state.reason;
    shown.textContent = n.toLocaleString("en") + " of " + cards.length.toLocaleString("en") + " cards shown";
  }

  document.querySelectorAll("button[data-filter]").forEach(function (b) {
    b.addEventListener("click", function () {
      state[b.getAttribute("data-filter")] = b.getAttribute("data-value");
      apply();
    });
  });
  reason.addEventListener("change", function () {
    state.reason = reason.value;
    apply();
  });
  document.querySelectorAll("li[data-reason]").forEach(function (li) {
    li.addEventListener("click", function () {
      state.reason = li.getAttribute("data-reason");
      apply();
      reason.scrollIntoView({ block: "nearest" });
    });
  });
  apply();
})();
