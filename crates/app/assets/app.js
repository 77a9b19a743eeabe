// The page's first screen: asks the app for its state. The screens come with the front end
// (docs/APP.md §5); this is the shell the server's tests load.
const state = document.getElementById("state");

async function call(cmd) {
  const r = await fetch("/api/call", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(cmd),
  });
  return r.json();
}

call({ cmd: "app_state" }).then(
  (r) => { state.textContent = r.kind === "state" ? r.profile : r.kind; },
  () => { state.textContent = "offline"; },
);
