// Upload a CSV of leads: POST /api/v1/ml/leads/upload answers 202 {batch_id, total}; the
// progress bar follows that batch's `batch_processing` events; the scores reach the queue live.

import { api } from "./api.js";
import { $, errorText } from "./dom.js";
import { onLive } from "./live.js";

let batchId = null;
const early = new Map(); // events of batches whose 202 has not arrived yet (they can race it)

function progress(data) {
  const bar = $("upload-progress");
  const percent = Math.round(data.progress_percent ?? (data.total ? (100 * data.completed) / data.total : 0));
  bar.value = percent;
  bar.dataset.status = data.status;
  if (data.status === "completed") {
    const failed = data.failed ? `; ${data.failed} row${data.failed === 1 ? "" : "s"} refused${rowErrors(data.errors)}` : "";
    $("upload-status").textContent = `Done (100 %): ${data.succeeded ?? data.completed} of ${data.total} leads scored${failed}. They are in the queue.`;
  } else if (data.status === "failed") {
    $("upload-status").textContent = `Stopped at ${data.completed} of ${data.total} leads (${percent} %).`;
    $("upload-error").textContent = `Scoring stopped: ${data.error ?? "the server gave no reason"}`;
  } else {
    $("upload-status").textContent = `Scoring: ${data.completed} of ${data.total} leads (${percent} %)`;
  }
}

function rowErrors(errors) {
  if (!errors?.length) return "";
  const shown = errors.slice(0, 3).map((e) => `row ${e.row}${e.lead_id ? ` (${e.lead_id})` : ""}: ${typeof e.detail === "string" ? e.detail : JSON.stringify(e.detail)}`);
  return ` — ${shown.join("; ")}${errors.length > 3 ? "; …" : ""}`;
}

async function send(file) {
  if (!file) return;
  $("upload-error").textContent = "";
  $("upload-name").textContent = `${file.name} (${Math.ceil(file.size / 1024)} KiB)`;
  $("upload-progress").value = 0;
  $("upload-status").textContent = "Uploading…";
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const started = await api("/api/v1/ml/leads/upload", { method: "POST", body: form });
    batchId = started.batch_id;
    progress(early.get(batchId) ?? { status: "started", completed: 0, total: started.total, progress_percent: 0 });
    early.clear();
  } catch (error) {
    $("upload-status").textContent = "";
    $("upload-error").textContent = `Upload refused: ${errorText(error)}`;
  } finally {
    $("upload-file").value = "";
  }
}

export function setup() {
  const drop = $("drop");
  $("upload-file").addEventListener("change", (event) => send(event.target.files[0]));
  $("upload-form").addEventListener("submit", (event) => event.preventDefault());
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    send(event.dataTransfer.files[0]);
  });
  onLive("batch_processing", (event) => {
    const data = event.data;
    if (data.batch_id === batchId) progress(data);
    else {
      early.delete(data.batch_id);
      early.set(data.batch_id, data); // the latest per batch, the 100 latest batches
      if (early.size > 100) early.delete(early.keys().next().value);
    }
  });
}
