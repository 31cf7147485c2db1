// The queue's downloads: the leads matching the current filters as CSV or Excel, and the
// broker's PDF report. Fetched with the session's token, then saved under the server's name.

import { download, query } from "./api.js";
import { $, errorText } from "./dom.js";
import { currentFilters } from "./queue.js";

function save(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

async function fetchAndSave(button, path, what) {
  const status = $("download-status");
  button.disabled = true;
  status.textContent = `Preparing ${what}…`;
  try {
    const { blob, filename } = await download(path);
    save(blob, filename);
    status.textContent = `${filename} downloaded`;
  } catch (error) {
    status.textContent = "";
    $("queue-error").textContent = `${what}: ${errorText(error)}`;
  } finally {
    button.disabled = false;
  }
}

function exportPath(format) {
  const { q, classification, qualification, min_score, source, scored_since, sort } = currentFilters();
  const params = { format, q, classification, qualification, min_score, source, scored_since, sort };
  return `/api/v1/ml/leads/export${query(params)}`;
}

export function setup() {
  $("export-csv").addEventListener("click", (event) => fetchAndSave(event.currentTarget, exportPath("csv"), "CSV export"));
  $("export-xlsx").addEventListener("click", (event) => fetchAndSave(event.currentTarget, exportPath("xlsx"), "Excel export"));
  $("report-pdf").addEventListener("click", (event) => fetchAndSave(event.currentTarget, "/api/v1/ml/report.pdf", "PDF report"));
}
