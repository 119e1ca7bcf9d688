// How the inbox page draws one notification: sender, topic, time, message,
// data, tags, and its actions (read or unread, archive, delete).

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function ago(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

function action(className, label, title, onClick) {
  const button = element("button", `act ${className}`, label);
  button.type = "button";
  button.title = title;
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    onClick();
  });
  return button;
}

/**
 * One list item. `on` has read(id), unread(id), archive(id) and remove(id);
 * a click on an unread item's body marks it read too.
 */
export function itemElement(item, on) {
  const id = item.notificationId;
  const li = element("li", item.readAt ? "item" : "item unread");
  li.dataset.id = id;
  li.dataset.seq = String(item.seq);
  const body = element("div", "item-body");
  body.title = item.readAt ? "Read" : "Mark read";
  body.addEventListener("click", () => on.read(id));
  body.append(element("span", "unread-dot"));
  const main = element("div", "item-main");
  const top = element("div", "item-top");
  top.append(element("span", "sender", item.sender ?? "system"));
  if (item.topic) top.append(element("span", "topic", `#${item.topic}`));
  const time = element("time", "when", ago(item.createdAt));
  time.dateTime = item.createdAt;
  time.title = new Date(item.createdAt).toLocaleString();
  top.append(time);
  main.append(top, element("p", "message", item.message));
  if (item.data && Object.keys(item.data).length) {
    main.append(element("code", "data", JSON.stringify(item.data)));
  }
  if (item.tags?.length) {
    const tags = element("ul", "tags");
    tags.setAttribute("aria-label", "Tags");
    for (const tag of item.tags) tags.append(element("li", "tag", tag));
    main.append(tags);
  }
  body.append(main);
  const actions = element("div", "actions");
  actions.append(
    item.readAt
      ? action("act-unread", "Mark unread", "Mark unread", () => on.unread(id))
      : action("act-read", "Mark read", "Mark read", () => on.read(id)),
    action("act-archive", "Archive", "Archive: out of the inbox", () => on.archive(id)),
    action("act-delete", "Delete", "Delete for good", () => on.remove(id)),
  );
  li.append(body, actions);
  return li;
}
