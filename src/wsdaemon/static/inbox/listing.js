// The list's controls: tabs (mine / unassigned / all) with their counts,
// the status filter, and the next page on scrolling (search: search.js).

/**
 * @param {object} deps channel (requests), list (ConversationList), $ (by id),
 *   toast (an error to show)
 * @return {{reload, loadMore, summarize, refreshCounts}}
 */
export function installListing({ channel, list, $, toast }) {
  function reload() {
    list.loading = true;
    channel.request(list.request()).then((answer) => { list.reset(answer); summarize(); },
      (e) => toast("Could not list conversations: " + e.message));
  }

  function loadMore() {
    if (!list.more || list.loading) { return; }
    list.loading = true;
    channel.request(list.request(list.next)).then((answer) => { list.take(answer); summarize(); },
      () => { list.loading = false; });
  }

  function summarize() {
    if (list.filter.status !== "resolved") { $("count-" + list.filter.view).textContent = list.total ? String(list.total) : ""; }
    $("list-summary").textContent = list.total === 1 ? "1 conversation" : list.total + " conversations";
    const resolved = list.filter.status === "resolved";
    $("list-end").textContent = list.more ? "Scroll for more"
      : resolved && list.scope === "live" ? "This daemon's store (Redis) keeps no list of resolved conversations: search finds the live ones."
      : list.total ? "" : resolved ? "No resolved conversations yet." : "Nothing here. Well done!";
    if (resolved) { $("list-summary").textContent += " resolved, most recent first"; }
  }

  let countsTimer = 0, countedAt = 0;
  /** The tabs' counts (a one-entry listing each): at once, then at most every 3 s. */
  function refreshCounts() {
    if (countsTimer) { return; }
    const count = () => {
      countsTimer = 0;
      countedAt = Date.now();
      for (const view of ["mine", "unassigned", "all"]) {
        const body = { type: "conversations", view, limit: 1 };
        // (Resolved ones are listed from the store, whatever the tab: the counts stay the live ones'.)
        if (list.filter.status && list.filter.status !== "resolved") { body.status = list.filter.status; }
        channel.request(body).then((a) => { $("count-" + view).textContent = a.total ? String(a.total) : ""; }, () => {});
      }
    };
    countsTimer = setTimeout(count, Math.max(0, countedAt + 3000 - Date.now()));
  }

  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.addEventListener("click", () => {
      for (const other of document.querySelectorAll("[role=tab]")) { other.setAttribute("aria-selected", String(other === tab)); }
      list.filter.view = tab.dataset.view;
      reload();
    });
  }
  $("status-filter").addEventListener("change", (event) => { list.filter.status = event.target.value || null; reload(); refreshCounts(); });
  $("conversations").addEventListener("scroll", () => {
    const box = $("conversations");
    if (box.scrollHeight - box.scrollTop - box.clientHeight < 400) { loadMore(); }
  });

  return { reload, loadMore, summarize, refreshCounts };
}
