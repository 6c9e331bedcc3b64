// A long form is never lost to the idle limit. Sessions end after 15 minutes without a request;
// typing into the form is use, so at most once a minute of typing the server is told. Before the
// form is sent the server is asked whether the sign-in still holds: if it ended (the phone was put
// down too long) or the server cannot be reached, nothing is sent, the answers stay on this page
// and a notice says what to do. Each answer carries the session's CSRF token, which replaces the
// page's own, so a form opened before signing in again in another tab can still be sent.
// Nothing is kept in the browser's storage: the phone may be shared. Without JavaScript the form
// posts as before (and a post after the sign-in ended is refused with a message).
(function () {
  var form = document.querySelector("form[data-keep-alive]");
  var ended = document.getElementById("session-ended");
  var offline = document.getElementById("connection-lost");
  if (!form || !ended || !offline || !window.fetch) return;
  var url = form.getAttribute("data-keep-alive");
  var EVERY = 60 * 1000;
  var last = Date.now();
  var busy = false;

  function show(notice) {
    ended.hidden = notice !== ended;
    offline.hidden = notice !== offline;
    if (notice) notice.focus();
  }

  // Resolves to the notice to show: null when signed in (and the CSRF tokens are fresh).
  function check() {
    last = Date.now();
    return fetch(url, {credentials: "same-origin", redirect: "manual", cache: "no-store",
                       headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (response.status !== 200) return ended;  // signed out: the login page's redirect
        return response.json().then(function (body) {
          var inputs = document.querySelectorAll('input[name="csrf_token"]');
          for (var i = 0; i < inputs.length; i++) inputs[i].value = body.csrf_token;
          return null;
        });
      }, function () { return offline; });
  }

  function activity() {
    if (!busy && Date.now() - last >= EVERY) check().then(function (notice) { if (!busy) show(notice); });
  }
  form.addEventListener("input", activity);
  form.addEventListener("change", activity);
  // Back from signing in again in another tab: say at once that the form can be sent.
  window.addEventListener("focus", function () {
    if (!busy && !(ended.hidden && offline.hidden)) check().then(show);
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (busy) return;  // one send at a time: a second press must not send the case twice
    busy = true;
    check().then(function (notice) {
      show(notice);
      if (notice) {
        busy = false;
      } else {
        form.submit();  // busy stays set: the page is leaving
      }
    });
  });
})();
