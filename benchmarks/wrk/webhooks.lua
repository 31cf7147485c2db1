-- POST /api/v1/crm/gohighlevel/webhook: each request one pre-signed delivery from the file
-- named by LEADSCORE_BENCH_WEBHOOKS (lines "<signature>\t<body>"), each thread its own slice.
local requests = {}
local next_index = 1

function setup(thread)
  thread:set("id", setup_count or 0)
  setup_count = (setup_count or 0) + 1
end

function init(args)
  local threads = tonumber(os.getenv("LEADSCORE_BENCH_THREADS") or "1")
  local n = 0
  for line in io.lines(os.getenv("LEADSCORE_BENCH_WEBHOOKS")) do
    if n % threads == (id or 0) then
      local tab = string.find(line, "\t", 1, true)
      table.insert(requests, wrk.format("POST", "/api/v1/crm/gohighlevel/webhook",
        {["Content-Type"] = "application/json", ["x-wh-signature"] = string.sub(line, 1, tab - 1)},
        string.sub(line, tab + 1)))
    end
    n = n + 1
  end
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1  -- past the end: repeats, answered "duplicate"
  return r
end
