"use strict";
(function () {
  const config = JSON.parse(document.getElementById("data").textContent);
  const $ = (id) => document.getElementById(id);
  // The items on screen (pages loaded, plus new ones up to MAX_SHOWN): the
  // queue itself may hold 100,000; the total comes from the daemon.
  const MAX_SHOWN = 500;
  const REVOKED = 4001;
  const items = new Map();
  let socket = null, me = null, selected = null, nextId = 1, total = 0;
  let listing = { type: "list" }, nextPage = null, transcriptBefore = null;
  const pending = new Map();

  $("token").value = sessionStorage.getItem("wsdaemon-operator-token") || "";

  function log(text) {
    const line = document.createElement("div");
    line.textContent = new Date().toLocaleTimeString() + "  " + text;
    $("events").appendChild(line);
    while ($("events").childNodes.length > 500) { $("events").removeChild($("events").firstChild); }
    $("events").scrollTop = $("events").scrollHeight;
  }

  function setState(name, label) {
    $("state").textContent = label || name;
    $("state").className = name;
    const open = name === "open";
    for (const id of ["reply-send", "push-send", "broadcast-send", "transcript-show",
                      "transcript-export", "logout", "filter-apply", "filter-clear"]) { $(id).disabled = !open; }
    $("login").disabled = open || name === "connecting";
  }

  function request(body) {
    return new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      socket.send(JSON.stringify(Object.assign({ id }, body)));
    });
  }

  function isOpen(item) { return item.state === "queued" || item.state === "claimed"; }

  function takePage(answer, replace) {
    if (replace) { items.clear(); }
    for (const item of answer.items) { items.set(item.item_id, item); }
    total = answer.total;
    nextPage = answer.more ? answer.next : null;
  }

  function wholeText(what) {
    let text = "";
    const step = (offset) => request(Object.assign({ type: "text", offset }, what)).then((a) => {
      text += a.text;
      return a.more ? step(offset + a.text.length) : text;
    });
    return step(0);
  }

  function showWhole(what) {
    wholeText(what).then((text) => {
      $("full").textContent = text;
      $("full-box").hidden = false;
    }).catch((e) => log("error: " + e));
  }

  function textCell(text, entry, what) {
    const cell = document.createElement("td");
    cell.className = "text";
    const body = document.createElement("span");
    body.className = "clamp";
    body.textContent = text;
    cell.appendChild(body);
    if (entry.truncated) {
      const more = document.createElement("span");
      more.className = "more-text";
      more.textContent = " \u2026 " + (entry.length - text.length) + " more characters ";
      cell.appendChild(more);
      const show = document.createElement("button");
      show.className = "link show-all";
      show.textContent = "show all";
      show.addEventListener("click", (event) => { event.stopPropagation(); showWhole(what); });
      cell.appendChild(show);
    }
    return cell;
  }

  function render() {
    const body = $("items");
    body.textContent = "";
    const open = [...items.values()].filter(isOpen).sort((a, b) => a.order - b.order);
    for (const item of open) {
      const row = document.createElement("tr");
      row.dataset.item = item.item_id;
      row.className = (item.state === "claimed" ? (item.operator === me ? "mine" : "claimed") : "") +
        (item.item_id === selected ? " selected" : "");
      const cells = [item.item_id, item.route, item.client_id + (item.online ? "" : " (offline)")];
      for (const text of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      row.appendChild(textCell(item.text, item, { item: item.item_id }));
      const state = document.createElement("td");
      state.className = "state";
      state.textContent = item.state + (item.operator ? " by " + item.operator : "");
      row.appendChild(state);
      const actions = document.createElement("td");
      const claim = document.createElement("button");
      claim.textContent = item.operator === me ? "Release" : "Claim";
      claim.className = item.operator === me ? "release" : "claim";
      claim.disabled = item.state === "claimed" && item.operator !== me;
      claim.addEventListener("click", (event) => {
        event.stopPropagation();
        const type = item.operator === me ? "release" : "claim";
        request({ type, item: item.item_id }).catch((e) => log("error: " + e));
      });
      actions.appendChild(claim);
      row.appendChild(actions);
      row.addEventListener("click", () => { selected = item.item_id; render(); });
      body.appendChild(row);
    }
    $("count").textContent = total;
    $("shown").textContent = open.length;
    const hidden = Math.max(0, (listing.search || listing.client ? 0 : total) - open.length);
    $("more-count").textContent = hidden ? ", " + hidden + " more in the queue" : "";
    $("load-more").hidden = nextPage === null;
  }

  function handle(event) {
    if (event.type === "hello") {
      me = event.operator;
      $("whoami").textContent = "as " + me;
      listing = { type: "list" };
      takePage(event, true);
      $("online").textContent = event.operators_online;
      log("signed in as " + me + "; " + event.total + " open item(s)");
    } else if (event.type === "resync") {
      listing = { type: "list" };
      takePage(event, true);
      log("queue resynchronised: " + event.total + " open item(s)");
    } else if (event.type === "item") {
      total += 1;
      if (!listing.search && !listing.client && items.size < MAX_SHOWN && nextPage === null) {
        items.set(event.item.item_id, event.item);
      }
      log("new message from " + event.item.client_id + ": " + event.item.text + (event.item.truncated ? " \u2026" : ""));
    } else if (event.type === "updated") {
      if (!isOpen(event.item)) {
        total = Math.max(0, total - 1);
        items.delete(event.item.item_id);
      } else if (items.has(event.item.item_id)) {
        items.set(event.item.item_id, event.item);
      }
      if (event.item.state === "answered") { log("item " + event.item.item_id + " answered by " + event.item.operator); }
    } else if (event.type === "undeliverable") {
      log("message " + event.seq + " for " + event.client_id + " could not be delivered: " + event.error);
    } else if (event.type === "ok" || event.type === "error") {
      const waiter = pending.get(event.id);
      if (waiter) {
        pending.delete(event.id);
        if (event.type === "ok") { waiter.resolve(event); } else { waiter.reject(event.error); }
      } else if (event.type === "error") { log("error: " + event.error); }
    }
    render();
  }

  function list(body, replace) {
    request(body).then((answer) => { takePage(answer, replace); render(); })
      .catch((e) => log("error: " + e));
  }

  $("load-more").addEventListener("click", () => {
    if (nextPage !== null) { list(Object.assign({}, listing, { after: nextPage }), false); }
  });
  $("filter-apply").addEventListener("click", () => {
    const text = $("filter-text").value.trim();
    listing = text ? ($("filter-client").checked ? { type: "list", client: text } : { type: "list", search: text })
      : { type: "list" };
    list(listing, true);
  });
  $("filter-clear").addEventListener("click", () => {
    $("filter-text").value = "";
    listing = { type: "list" };
    list(listing, true);
  });
  $("full-close").addEventListener("click", () => { $("full-box").hidden = true; });

  $("login").addEventListener("click", () => {
    const token = $("token").value.trim();
    sessionStorage.setItem("wsdaemon-operator-token", token);
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    setState("connecting");
    socket = new WebSocket(scheme + location.host + config.channel + "?token=" + encodeURIComponent(token));
    socket.onopen = () => setState("open");
    socket.onmessage = (event) => handle(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (event.code === REVOKED) {
        setState("revoked", "signed out: your token was revoked");
        log("signed out: your operator token was revoked (code 4001); ask for a new one");
        sessionStorage.removeItem("wsdaemon-operator-token");
      } else {
        setState("closed");
        log("disconnected (code " + event.code + ")" + (event.code === 1006 ? ": check the token" : ""));
      }
      socket = null;
      for (const waiter of pending.values()) { waiter.reject("disconnected"); }
      pending.clear();
    };
  });
  $("logout").addEventListener("click", () => socket && socket.close(1000));

  $("reply-send").addEventListener("click", () => {
    const text = $("reply-text").value;
    if (!text) { return; }
    const body = { type: "reply", text };
    if (selected && items.has(selected) && isOpen(items.get(selected))) { body.item = selected; }
    request(body).then((answer) => {
      log("replied to " + answer.item.item_id + " (" + answer.delivered + " connection(s) now)");
      $("reply-text").value = "";
      selected = null;
      render();
    }).catch((e) => log("error: " + e));
  });

  $("push-send").addEventListener("click", () => {
    request({ type: "push", client: $("push-client").value, text: $("push-text").value })
      .then((a) => log("pushed (" + a.delivered + " connection(s) now)")).catch((e) => log("error: " + e));
  });
  $("broadcast-send").addEventListener("click", () => {
    request({ type: "broadcast", route: $("broadcast-route").value, text: $("broadcast-text").value })
      .then((a) => log("broadcast reached " + a.delivered + " connection(s)")).catch((e) => log("error: " + e));
  });

  function transcriptRequest(extra) {
    const client = $("transcript-client").value.trim();
    return Object.assign({ type: "transcript" }, client ? { client } : {}, extra || {});
  }
  function transcriptLines(entries) {
    return entries.map((e) => {
      const line = document.createElement("div");
      line.textContent = new Date(e.at * 1000).toISOString() + " " + e.client_id + " " +
        (e.direction === "in" ? "<- client" : "-> " + e.sender) + (e.failed ? " (never delivered)" : "") + ": " + e.body;
      if (e.truncated) {
        const show = document.createElement("button");
        show.className = "link show-all";
        show.textContent = "\u2026 " + (e.length - e.body.length) + " more characters";
        show.addEventListener("click", () => showWhole({ seq: e.seq }));
        line.appendChild(show);
      }
      return line;
    });
  }
  function showTranscript(answer, older) {
    const box = $("transcript");
    const lines = transcriptLines(answer.entries);
    if (older) { box.prepend(...lines); } else { box.replaceChildren(...lines); }
    if (!box.childNodes.length) { box.textContent = "(empty)"; }
    transcriptBefore = answer.more ? answer.before : null;
    $("transcript-older").hidden = transcriptBefore === null;
  }
  $("transcript-show").addEventListener("click", () => {
    request(transcriptRequest()).then((a) => showTranscript(a, false)).catch((e) => log("error: " + e));
  });
  $("transcript-older").addEventListener("click", () => {
    request(transcriptRequest({ before: transcriptBefore })).then((a) => showTranscript(a, true))
      .catch((e) => log("error: " + e));
  });
  $("transcript-export").addEventListener("click", async () => {
    try {
      let entries = [], before = null;
      for (;;) {
        const page = await request(transcriptRequest(Object.assign({ limit: 1000 }, before === null ? {} : { before })));
        entries = page.entries.concat(entries);
        if (!page.more) { break; }
        before = page.before;
      }
      for (const e of entries) {
        if (e.truncated) { e.body = await wholeText({ seq: e.seq }); e.truncated = false; }
      }
      const blob = new Blob([entries.map((e) => JSON.stringify(e)).join("\n") + "\n"],
                            { type: "application/x-ndjson" });
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = "transcript.jsonl";
      link.click();
      log("exported " + entries.length + " line(s)");
    } catch (e) { log("error: " + e); }
  });
})();
