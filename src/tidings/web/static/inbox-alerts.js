// Desktop notifications for the inbox page (the Notification API): a toggle
// that asks the browser's permission, remembered in localStorage; once on, a
// notification that arrives while the tab is hidden shows one.

const KEY = "tidings.desktopAlerts";

/** Wire `toggle` (a checkbox); `say(text)` reports a refusal. Returns notify(item). */
export function desktopAlerts(toggle, say) {
  const supported = typeof window.Notification === "function";
  const allowed = () => supported && window.Notification.permission === "granted";
  toggle.checked = allowed() && localStorage.getItem(KEY) === "on";
  toggle.disabled = !supported;
  if (!supported) toggle.title = "This browser has no desktop notifications";

  toggle.addEventListener("change", async () => {
    if (!toggle.checked) {
      localStorage.setItem(KEY, "off");
      return;
    }
    // Asked each time it is switched on: answered at once when already granted.
    const permission = await window.Notification.requestPermission();
    if (permission === "granted") {
      localStorage.setItem(KEY, "on");
    } else {
      toggle.checked = false;
      say("Desktop notifications are blocked for this site; allow them in the browser's site settings.");
    }
  });

  return function notify(item) {
    if (!toggle.checked || !allowed() || document.visibilityState !== "hidden") return;
    const shown = new window.Notification(item.sender ? `From ${item.sender}` : "tidings", {
      body: item.message,
      tag: item.notificationId,
    });
    shown.onclick = () => {
      window.focus();
      shown.close();
    };
  };
}
