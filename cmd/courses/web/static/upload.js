// A teacher's upload: the app presigns a PUT, the browser sends the file
// straight to the bucket, then the app checks it arrived and lists it.
(function () {
  "use strict";
  var form = document.getElementById("upload");
  if (!form) return;
  var status = document.getElementById("up-status");
  var say = function (msg) { status.textContent = msg; };
  var fieldErrors = function (body) {
    if (body && body.fields) {
      return Object.keys(body.fields).map(function (k) { return body.fields[k]; }).join(" ");
    }
    return (body && body.error) || "The upload was refused.";
  };
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var file = form.elements.file.files[0];
    var title = form.elements.title.value;
    var csrf = form.elements.csrf_token.value;
    if (!file) { say("Choose a file first."); return; }
    var max = Number(form.dataset.max);
    if (max && file.size > max) {
      say("The file is larger than the limit: make it smaller (compress it, or split it) and upload again.");
      return;
    }
    say("Uploading " + file.name + "…");
    var started;
    fetch("/api/courses/" + form.dataset.course + "/materials/uploads", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ title: title, filename: file.name, content_type: file.type || "application/octet-stream", size: file.size })
    }).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) throw new Error(fieldErrors(body));
        return body;
      });
    }).then(function (up) {
      started = up;
      return fetch(up.url, { method: up.method, headers: up.headers, body: file });
    }).then(function (put) {
      if (!put.ok) throw new Error("The file store refused the file (HTTP " + put.status + "). Try again; if it keeps happening, the file may be too large.");
      return fetch(started.complete, { method: "POST", headers: { "X-CSRF-Token": csrf } });
    }).then(function (done) {
      return done.json().then(function (body) {
        if (!done.ok) throw new Error(body.error || "The upload could not be confirmed.");
        say("Uploaded. Students see it now.");
        window.location.reload();
      });
    }).catch(function (err) {
      say("Not uploaded: " + err.message);
    });
  });
})();
