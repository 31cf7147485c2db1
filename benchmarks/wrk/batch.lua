-- POST /api/v1/ml/batch-score with 100 new leads per request (no cache hits), explanations on.
local counter = 0
local run = 0

function init(args)
  math.randomseed(os.time())
  run = math.random(1, 1000000000)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-API-Key"] = os.getenv("LEADSCORE_BENCH_KEY")
end

local lead = '{"lead_id":"batch_%d_%d_%d","lead_data":{"source":"zillow","budget_range":"500k-750k","location_preference":"Downtown Austin","timeline":"%d-6 months","pre_approved":true,"web_activity":{"properties_viewed":%d,"repeat_listing_views":4},"interaction_history":[{"timestamp":"2026-01-24T10:30:00Z","type":"email_response","response_time_hours":%d.5,"message_length":156,"questions_asked":3}]}}'

function request()
  counter = counter + 1
  local leads = {}
  for i = 1, 100 do
    leads[i] = string.format(lead, run, counter, i, i % 5 + 1, i % 30, i % 7)
  end
  local body = '{"leads":[' .. table.concat(leads, ",") .. '],"options":{"return_feature_importance":true}}'
  return wrk.format(nil, "/api/v1/ml/batch-score", nil, body)
end
