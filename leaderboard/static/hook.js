/* Records uncaught script errors in the DOM (data-js-errors on <html> and a visible note), so a
   headless browser check with --dump-dom can see them without the DevTools protocol. */
(function () {
  var errs = [];
  function note(msg) {
    errs.push(String(msg));
    document.documentElement.setAttribute("data-js-errors", errs.join(" | "));
  }
  window.addEventListener("error", function (e) { note(e.message || "error"); });
  window.addEventListener("unhandledrejection", function (e) { note("unhandled rejection: " + e.reason); });
})();
