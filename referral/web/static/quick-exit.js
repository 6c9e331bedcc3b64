// Quick exit: leave for a neutral site and replace this page in history, so
// the Back button does not return here. Works as a plain link without JS.
(function () {
  var link = document.getElementById("quick-exit");
  if (!link) return;
  function leave(event) {
    if (event) event.preventDefault();
    window.location.replace(link.getAttribute("data-exit"));
  }
  link.addEventListener("click", leave);
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") leave(e); });
})();
