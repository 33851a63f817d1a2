"use strict";
(function () {
  const data = JSON.parse(document.getElementById("data").textContent);
  const routes = data.routes;
  const $ = (id) => document.getElementById(id);
  const select = $("route"), state = $("state"), log = $("log");
  let socket = null;

  for (const route of routes) {
    const option = document.createElement("option");
    option.value = route.path;
    option.textContent = route.path + " (" + route.strategy + ")";
    select.appendChild(option);
  }
  // Routes with identity = jwt need a token a site's backend mints: not from here.
  const leftOut = data.token_routes || [];
  if (leftOut.length) {
    $("left-out").textContent = "Not listed: " + leftOut.join(", ") + " (identity = jwt: a "
      + "client needs a token minted by the site's backend, which this page does not have).";
    $("left-out").hidden = false;
  }

  function show(kind, text) {
    const item = document.createElement("li");
    item.className = kind;
    item.textContent = text;
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
  }

  function setState(name) {
    state.textContent = name;
    state.className = name;
    const open = name === "open";
    $("send").disabled = !open;
    $("disconnect").disabled = !(open || name === "connecting");
    $("connect").disabled = open || name === "connecting";
    select.disabled = open || name === "connecting";
  }

  $("connect").addEventListener("click", function () {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const url = scheme + location.host + select.value;
    setState("connecting");
    socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => { setState("open"); show("info", "connected to " + url); };
    socket.onmessage = (event) => {
      if (typeof event.data === "string") { show("received", event.data); }
      else { show("received", "[binary, " + event.data.byteLength + " bytes]"); }
    };
    socket.onclose = (event) => {
      setState("closed");
      show("info", "closed (code " + event.code + (event.reason ? ", " + event.reason : "") + ")");
      socket = null;
    };
    socket.onerror = () => show("info", "connection error");
  });

  $("disconnect").addEventListener("click", function () {
    if (socket) { setState("closing"); socket.close(1000, "bye"); }
  });

  $("send-form").addEventListener("submit", function (event) {
    event.preventDefault();
    const input = $("message");
    if (!socket || socket.readyState !== WebSocket.OPEN) { return; }
    socket.send(input.value);
    show("sent", input.value);
    input.value = "";
    input.focus();
  });
})();
