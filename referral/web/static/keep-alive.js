// A long form is never lost to the idle limit. Sessions end after 15 minutes without a request;
// typing into a form marked data-keep-alive is use, so at most once a minute of typing the server is
// told. Before such a form is sent the server is asked whether the sign-in still holds: if it ended
// (the phone was put down too long) or the server cannot be reached, nothing is sent, what was
// written stays on the page and the form's notice (.session-ended, .connection-lost) says what to
// do. Each answer carries the session's CSRF token, which replaces the page's own, so a form opened
// before signing in again in another tab can still be sent - by the same person only: the answer
// names who is signed in (data-user on the form), and when that is someone else on a shared phone
// the form is never sent under their name. Nothing is kept in the browser's storage: the phone may
// be shared. Without JavaScript the forms post as before (and a post after the sign-in ended is
// refused with a message).
(function () {
  var forms = document.querySelectorAll("form[data-keep-alive]");
  if (!forms.length || !window.fetch) return;
  var url = forms[0].getAttribute("data-keep-alive");
  var user = forms[0].getAttribute("data-user");
  var EVERY = 60 * 1000;
  var WAIT = 20 * 1000;  // a slow link may take long, but not forever: then it counts as unreachable
  var last = Date.now();
  var busy = false;
  var shown = null;  // the notice on display, if any
  window.addEventListener("pageshow", function () { busy = false; });  // back on the page: it may send again

  function show(form, kind) {
    var notices = document.querySelectorAll("form[data-keep-alive] .session-ended, form[data-keep-alive] .connection-lost");
    for (var i = 0; i < notices.length; i++) notices[i].hidden = true;
    shown = kind && form.querySelector("." + kind);
    if (shown) {
      shown.hidden = false;
      shown.focus();
    }
  }

  // Resolves to the kind of notice to show: null when the same person is still signed in (and the
  // CSRF tokens are then fresh). Signed out (the login page's redirect, or 401), or someone else
  // signed in: session-ended. Anything else - no answer in time, a server error, an answer that is
  // not ours (a captive portal) - is connection-lost: nothing is sent either way.
  function check() {
    last = Date.now();
    var abort = window.AbortController ? new AbortController() : null;
    var timer = abort && setTimeout(function () { abort.abort(); }, WAIT);
    return fetch(url, {credentials: "same-origin", redirect: "manual", cache: "no-store",
                       headers: {"Accept": "application/json"}, signal: abort ? abort.signal : undefined})
      .then(function (response) {
        if (response.type === "opaqueredirect" || response.status === 401) return "session-ended";
        if (response.status !== 200) return "connection-lost";
        return response.json().then(function (body) {
          if (typeof body.csrf_token !== "string") return "connection-lost";
          if (String(body.user) !== user) return "session-ended";
          var inputs = document.querySelectorAll('input[name="csrf_token"]');
          for (var i = 0; i < inputs.length; i++) inputs[i].value = body.csrf_token;
          return null;
        });
      })
      .catch(function () { return "connection-lost"; })
      .then(function (kind) {
        if (timer) clearTimeout(timer);
        return kind;
      });
  }

  function watch(form) {
    function activity() {
      if (!busy && Date.now() - last >= EVERY) check().then(function (kind) { if (!busy) show(form, kind); });
    }
    form.addEventListener("input", activity);
    form.addEventListener("change", activity);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (busy) return;  // one send at a time: a second press must not send it twice
      busy = true;
      var submitter = event.submitter;  // e.g. a language, which sends the form elsewhere, named
      check().then(function (kind) {
        show(form, kind);
        if (kind) {
          busy = false;
        } else {
          // form.submit() sends neither the pressed button's name nor its formaction: carry both (and only
          // this press's: a page kept by the browser must not resend an earlier choice).
          var earlier = form.querySelectorAll("input[data-carried]");
          for (var j = 0; j < earlier.length; j++) earlier[j].remove();
          form.action = form.getAttribute("action");
          if (submitter && submitter.name) {
            var carried = document.createElement("input");
            carried.type = "hidden";
            carried.setAttribute("data-carried", "");
            carried.name = submitter.name;
            carried.value = submitter.value;
            form.appendChild(carried);
          }
          if (submitter && submitter.hasAttribute("formaction")) form.action = submitter.formAction;
          form.submit();  // busy stays set: the page is leaving
        }
      });
    });
  }
  for (var i = 0; i < forms.length; i++) watch(forms[i]);
  // Back from signing in again in another tab: say at once that the form can be sent.
  window.addEventListener("focus", function () {
    if (busy || !shown) return;
    var form = shown.closest("form");
    check().then(function (kind) { show(form, kind); });
  });
})();
