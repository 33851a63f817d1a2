/*
 * wsdaemon chat widget: the one script a site embeds.
 *
 *   <script src="https://HOST/_wsdaemon/widget.js" data-route="/support" async></script>
 *
 * This loader reads its tag's data- attributes, puts the API on
 * window.wsdaemon at once (calls made before the widget is ready are queued,
 * as are those of a stub the page set up earlier: window.wsdaemon.q), and
 * imports the widget's modules from the same daemon. No inline script or
 * style anywhere: the page's Content-Security-Policy may stay strict.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__wsdaemonWidget) { return; }  // one widget a page
  window.__wsdaemonWidget = true;
  var base = new URL(script.src, location.href);
  var data = script.dataset;
  var METHODS = ["identify", "open", "close", "toggle", "on", "off", "token", "send"];
  var queue = [];
  var earlier = window.wsdaemon;
  if (earlier && earlier.q && typeof earlier.q.length === "number") {
    for (var i = 0; i < earlier.q.length && i < 100; i++) {
      queue.push(Array.prototype.slice.call(earlier.q[i]));
    }
  }
  var api = function () {
    var args = Array.prototype.slice.call(arguments);
    if (typeof api[args[0]] === "function" && METHODS.indexOf(args[0]) >= 0) {
      return api[args[0]].apply(api, args.slice(1));
    }
  };
  METHODS.forEach(function (name) {
    api[name] = function () {
      if (queue.length < 100) { queue.push([name].concat(Array.prototype.slice.call(arguments))); }
      return api;
    };
  });
  window.wsdaemon = api;
  if (!data.route || data.route.charAt(0) !== "/") {
    console.error("wsdaemon widget: the script tag needs data-route, the route's path (\"/support\")");
    return;
  }
  var options = {
    // The modules and style sheet next to this script (a proxy may serve it under a prefix).
    assets: new URL("widget/", base).href,
    socket: (base.protocol === "https:" ? "wss://" : "ws://") + base.host + data.route,
    route: data.route,
    token: data.token || null,
    lang: data.lang || navigator.language || "en",
    color: data.color || null,
    position: data.position === "left" ? "left" : "right",
    title: data.title || null,
    greeting: data.greeting || null,
    open: data.open === "true",
    launcher: data.launcher !== "none",  // "none": the page opens the panel (wsdaemon.open())
  };
  import(new URL("widget/app.js", base).href).then(function (app) {
    app.start(options, api, queue);
  }, function (error) {
    console.error("wsdaemon widget: could not load", error);
  });
})();
