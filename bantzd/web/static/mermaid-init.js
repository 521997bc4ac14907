// Draws the report's ```mermaid blocks (the Timeline) in the page; without JavaScript they
// stay readable as text. "strict": no HTML and no click handlers from the chart's text.
document.addEventListener("DOMContentLoaded", function () {
  if (!window.mermaid) return;
  window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });
  window.mermaid.run({ querySelector: "pre.mermaid" }).then(function () {
    document.body.dataset.mermaid = "drawn";
  }, function (err) {
    document.body.dataset.mermaid = "failed";
    console.error(err);
  });
});
