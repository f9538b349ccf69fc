// Tell RequireJS where the widget modules live on this site.
//
// The widget bundle (html-manager/dist/embed-amd.js) defines its modules by name
// and asks for its font files relative to each module's URL. Without a `paths`
// entry RequireJS guesses "<page dir>/@jupyter-widgets/<name>.js", which does not
// exist, so icons and fonts 404 on every page below the site root. This file is
// loaded after require.js and before embed-amd.js, and maps every module id of the
// bundle to the bundle's real location next to this script in _static/.
(function () {
  "use strict";
  var here = document.currentScript && document.currentScript.src;
  if (!here || typeof window.require === "undefined" || !window.require.config) {
    return;
  }
  var bundle = here.replace(/[^/]*$/, "") + "html-manager/dist/embed-amd";
  var ids = [
    "@jupyter-widgets/base",
    "@jupyter-widgets/base7",
    "@jupyter-widgets/controls",
    "@jupyter-widgets/controls7",
    "@jupyter-widgets/html-manager",
    "@jupyter-widgets/html-manager/dist/libembed-amd"
  ];
  var paths = {};
  for (var i = 0; i < ids.length; i++) {
    paths[ids[i]] = bundle;
  }
  window.require.config({ paths: paths });
})();
