-- POST /api/v1/ml/score with a new lead id each request (no cache hits), explanations on.
local counter = 0
local run = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + (id or 0) * 7919)
  run = math.random(1, 1000000000)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-API-Key"] = os.getenv("LEADSCORE_BENCH_KEY")
end

local template = '{"lead_id":"bench_%d_%d_%d","lead_data":{"name":"Sarah Chen","email":"sarah.chen@example.com","phone":"+1-555-0123","source":"zillow","budget_range":"500k-750k","location_preference":"Downtown Austin","timeline":"3-6 months","pre_approved":true,"web_activity":{"properties_viewed":14,"repeat_listing_views":4,"favorites":3},"interaction_history":[{"timestamp":"2026-01-24T10:30:00Z","type":"email_response","response_time_hours":2.5,"message_length":156,"questions_asked":3}]},"options":{"return_feature_importance":true,"calculate_commission":true}}'

function request()
  counter = counter + 1
  return wrk.format(nil, "/api/v1/ml/score", nil, string.format(template, run, id or 0, counter))
end
