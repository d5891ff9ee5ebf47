// Shows how much of the zip has been sent while it uploads, then follows the portal's answer.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.XMLHttpRequest || !window.FormData) return;
  var bar = document.getElementById("upload-progress");
  var label = document.getElementById("upload-progress-label");

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var request = new XMLHttpRequest();
    request.open("POST", form.action || window.location.href);
    request.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      var percent = Math.floor((e.loaded * 100) / e.total);
      bar.hidden = false;
      bar.value = percent;
      label.textContent = "Uploading… " + percent + "% (" + (e.loaded / 1048576).toFixed(1) + " of " +
        (e.total / 1048576).toFixed(1) + " MB)";
    });
    request.addEventListener("load", function () {
      // The submission's page after a redirect, or this form again with what to change.
      var page = request.responseURL || window.location.href;
      document.open(); document.write(request.responseText); document.close();
      if (page !== window.location.href) window.history.replaceState(null, "", page);
    });
    request.addEventListener("error", function () {
      label.textContent = "The upload was interrupted. Check your connection and try again.";
    });
    form.querySelector("button[type=submit]").disabled = true;
    request.send(new FormData(form));
  });
})();
