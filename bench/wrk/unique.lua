-- Scenarios b and h: every alert new.  Each request carries `batch`
-- (default 1; 50 in h) alerts never seen before, each with its own
-- fingerprint and in its own namespace, so each is its own correlation
-- group (no storm folds them) and every one is forwarded.
-- The label `seq` numbers them; the annotation `bench_sent` holds the time
-- the body was made, from which the stub processor measures
-- receipt-to-processor latency.
--
--   wrk ... -s bench/wrk/unique.lua URL -- token=T batch=50

local am = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local threads = 0
local headers, batch
local counter = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  local opts = am.options(args)
  headers = am.headers(opts)
  batch = tonumber(opts.batch or "1")
  -- Disjoint ranges per thread (tid is set by setup()).
  counter = (tid or 0) * 100000000
end

function request()
  local alerts = {}
  local sent = string.format("%.6f", am.now())
  for i = 1, batch do
    counter = counter + 1
    local seq = tostring(counter)
    local a = am.pod_alert("BenchAlertFiring", "bench-" .. seq, "api-" .. seq)
    a.labels.seq = seq
    a.annotations.bench_sent = sent
    alerts[i] = a
  end
  return wrk.format("POST", nil, headers, am.body(alerts))
end

done = am.done
