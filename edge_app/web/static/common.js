"use strict";
// What every page of the app shares: who is logged in, the CSRF token, JSON requests, logging out.
const session = {user: null, csrf: null};

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (options.method && options.method !== "GET") headers["X-CSRF-Token"] = session.csrf;
  const response = await fetch(path, Object.assign({}, options, {headers}));
  if (response.status === 401) {
    location.assign("/login?next=" + encodeURIComponent(location.pathname));
    throw new Error("not logged in");
  }
  return response;
}

async function startSession() {
  const response = await api("/api/session");
  Object.assign(session, await response.json());
  const who = document.getElementById("who");
  if (who) who.textContent = "Logged in as " + session.user;
  const button = document.getElementById("logout");
  if (button) {
    button.addEventListener("click", async () => {
      await api("/api/session", {method: "DELETE"});
      location.assign("/login");
    });
  }
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function when(seconds) {
  return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}
