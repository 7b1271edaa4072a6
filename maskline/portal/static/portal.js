// maskline portal: progressive enhancement only; every page works without it.

// Copy buttons: <button data-copy="input-id">.
for (const button of document.querySelectorAll("button[data-copy]")) {
  button.addEventListener("click", async () => {
    const field = document.getElementById(button.dataset.copy);
    try {
      await navigator.clipboard.writeText(field.value);
      button.textContent = "Copied";
    } catch {
      field.select();
      button.textContent = "Press Ctrl+C";
    }
  });
}

// Calls list: while a call on the page is live, fetch the rows again every 2 s and
// put them in place (server-rendered HTML of this origin), without a reload.
const POLL_MS = 2000;
const table = document.querySelector("table[data-rows]");
if (table) {
  const poll = async () => {
    const rows = document.getElementById("call-rows");
    if (!rows || rows.dataset.live !== "true") return;
    try {
      const response = await fetch(table.dataset.rows, {
        headers: { Accept: "text/html" },
        credentials: "same-origin",
      });
      if (response.ok) {
        const holder = document.createElement("table");
        holder.innerHTML = await response.text();
        const fresh = holder.querySelector("tbody");
        if (fresh) rows.replaceWith(fresh);
      }
    } finally {
      setTimeout(poll, POLL_MS);
    }
  };
  setTimeout(poll, POLL_MS);
}

// Wallet top-up: open Razorpay Checkout (its own script, loaded by the page) for the
// order; Checkout posts the payment back to the callback URL (redirect mode).
const pay = document.querySelector("button[data-razorpay-key]");
if (pay) {
  pay.addEventListener("click", () => {
    const data = pay.dataset;
    const checkout = new window.Razorpay({
      key: data.razorpayKey,
      order_id: data.order,
      amount: Number(data.amount),
      currency: data.currency,
      name: data.name,
      description: data.description,
      callback_url: data.callback,
      redirect: true,
      prefill: { email: data.email },
    });
    checkout.open();
  });
}
