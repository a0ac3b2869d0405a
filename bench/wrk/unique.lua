-- Scenarios b and h: every alert new.  Each request carries `batch`
-- (default 1; 50 in h) alerts never seen before, each with its own
-- fingerprint and in its own namespace, so each is its own correlation
-- group (no storm folds them) and every one is forwarded.
-- The label `seq` numbers them; the annotation `bench_sent` holds the time
-- the body was made, from which the stub processor measures
-- receipt-to-processor latency.
--
-- Bodies are made per request, so making them must cost far less than the
-- ceiling spends reading them: the JSON is cut once, in init(), into
-- templates (from common.lua's general construction, with marker values
-- where the numbers go), and the fingerprint hashes only the labels after
-- the ones every alert shares.  init() checks the fast bodies against the
-- general construction.
--
--   wrk ... -s bench/wrk/unique.lua URL -- token=T batch=50

local am = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local NAME = "BenchAlertFiring"
-- Marker values: nothing else in a body looks like them.
local SEQ, SENT = "987654321", "1234567890.123456"

local threads = 0
local headers, batch
local counter = 0
-- The fingerprint's state after the labels sorted before `namespace`.
local shared_hash
local alert_template, body_template
local values = {}

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local function pod_alert(seq, sent)
  local a = am.pod_alert(NAME, "bench-" .. seq, "api-" .. seq)
  a.labels.seq = seq
  a.annotations.bench_sent = sent
  return a
end

-- make(seq, sent) of each number first..first+batch-1.
local function each(first, sent, make)
  local made = {}
  for i = 1, batch do
    made[i] = make(tostring(first + i - 1), sent)
  end
  return made
end

-- The general construction of a body.
local function slow_body(first, sent)
  return am.body(each(first, sent, pod_alert))
end

-- `text` as a list of literal strings and keys: each occurrence of a
-- marker (markers[key] = text) becomes its key.
local function template(text, markers)
  local parts, at = {}, 1
  while true do
    local best, stop, found
    for key, marker in pairs(markers) do
      local s, e = text:find(marker, at, true)
      if s and (best == nil or s < best) then
        best, stop, found = s, e, key
      end
    end
    if best == nil then
      parts[#parts + 1] = text:sub(at)
      return parts
    end
    parts[#parts + 1] = text:sub(at, best - 1)
    parts[#parts + 1] = { found }
    at = stop + 1
  end
end

local function fill(parts, vals)
  local out = {}
  for i, part in ipairs(parts) do
    out[i] = type(part) == "table" and vals[part[1]] or part
  end
  return table.concat(out)
end

local function alert_json(seq, sent)
  local h = am.fnv(shared_hash, "bench-" .. seq .. "\255pod\255api-" .. seq .. "\255seq\255" .. seq
    .. "\255severity\255critical\255")
  values.seq, values.sent, values.fp = seq, sent, bit.tohex(h, 16)
  return fill(alert_template, values)
end

local function fast_body(first, sent)
  local alerts = table.concat(each(first, sent, alert_json), ",")
  values.alerts, values.seq, values.sent = alerts, tostring(first), sent
  return fill(body_template, values)
end

function init(args)
  local opts = am.options(args)
  headers = am.headers(opts)
  batch = tonumber(opts.batch or "1")
  shared_hash = am.fnv(am.FNV_OFFSET, "alertname\255" .. NAME .. "\255container\255api\255job\255kube-state-metrics"
    .. "\255namespace\255")
  local one = pod_alert(SEQ, SENT)
  local alert = am.alert(one.labels, one.annotations)
  alert_template = template(alert, { seq = SEQ, sent = SENT, fp = am.fingerprint(one.labels) })
  -- The body around the alerts: the first alert's number (its group) and
  -- the send time (common annotations) remain.
  local whole = slow_body(tonumber(SEQ), SENT)
  local first = whole:find('"alerts":[', 1, true) + #'"alerts":['
  local last = whole:find('],"groupLabels":', 1, true) - 1
  body_template = template(whole:sub(1, first - 1) .. "\0" .. whole:sub(last + 1),
    { alerts = "\0", seq = SEQ, sent = SENT })
  for _, n in ipairs({ 1, 123456789 }) do
    assert(fast_body(n, SENT) == slow_body(n, SENT), "unique.lua: fast body differs from common.lua's")
  end
  -- Disjoint ranges per thread (tid is set by setup()).
  counter = (tid or 0) * 100000000
end

function request()
  local first = counter + 1
  counter = counter + batch
  return wrk.format("POST", nil, headers, fast_body(first, string.format("%.6f", am.now())))
end

done = am.done
