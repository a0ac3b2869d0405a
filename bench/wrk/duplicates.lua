-- Scenarios a, c, e, g: duplicate-heavy webhooks.  Bodies of `batch`
-- alerts (default 1) cycle through `fingerprints` (default 1,000) pods of
-- one alert rule in one namespace, as an Alertmanager repeating a firing
-- group sends them.  Every body is built once, in init().
--
--   wrk ... -s bench/wrk/duplicates.lua URL -- token=T batch=50 fingerprints=1000

local am = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local prepared = {}
local index = 0

function init(args)
  local opts = am.options(args)
  local batch = tonumber(opts.batch or "1")
  local fingerprints = tonumber(opts.fingerprints or "1000")
  local headers = am.headers(opts)
  local pod = 0
  for b = 1, math.ceil(fingerprints / batch) do
    local alerts = {}
    for i = 1, batch do
      alerts[i] = am.pod_alert("KubePodCrashLooping", "payments", string.format("api-7d9f8b-%05d", pod))
      pod = (pod + 1) % fingerprints
    end
    prepared[b] = wrk.format("POST", nil, headers, am.body(alerts))
  end
end

function request()
  index = index % #prepared + 1
  return prepared[index]
end

done = am.done
