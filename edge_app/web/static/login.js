"use strict";
// Log in with the JSON API, then go where the reader was going (a path on this device only).
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const message = document.getElementById("message");
  message.textContent = "";
  const response = await fetch("/api/session", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({
      user: document.getElementById("user").value,
      password: document.getElementById("password").value,
    }),
  });
  if (response.ok) {
    const next = new URLSearchParams(location.search).get("next") || "/scans";
    location.assign(next.startsWith("/") && !next.startsWith("//") ? next : "/scans");
  } else {
    message.textContent = (await response.json()).error;
  }
});
