// Runs first: records script errors in the page itself (#page-errors, and data-js-errors on <html>),
// so a reader sees them and a headless browser check can read them from the DOM.
(function () {
  var errors = [];
  function record(message) {
    errors.push(String(message));
    document.documentElement.setAttribute("data-js-errors", String(errors.length));
    var box = document.getElementById("page-errors");
    if (box) {
      box.hidden = false;
      box.textContent = "Script errors on this page: " + errors.join(" | ");
    }
  }
  window.addEventListener("error", function (e) { record(e.message || e); });
  window.addEventListener("unhandledrejection", function (e) { record("unhandled rejection: " + e.reason); });
  var original = console.error;
  console.error = function () {
    record(Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
  window.__benchReportErrors = errors;
})();
