-- Shared by the benchmark's wrk scripts: Alertmanager v4 webhook bodies
-- (the shape a real Alertmanager 0.25 POSTs, keys in its order, labels
-- sorted, Alertmanager's own fingerprint), the headers it sends, option
-- parsing, and a done() printing exact percentiles as one JSON line.
--
-- Loaded with dofile() by each script, once per Lua state (wrk runs one
-- state per thread plus one for setup/done).

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_usec; } bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
]])

local M = {}
local tv = ffi.new("bench_timeval")

-- Wall-clock seconds with microseconds (the stub processor compares it
-- with its own time.time() on the same machine).
function M.now()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) / 1e6
end

-- Options given after `--` on the wrk command line, as key=value.
function M.options(args)
  local opts = {}
  for _, arg in ipairs(args or {}) do
    local key, value = arg:match("^([%w_]+)=(.*)$")
    if key then
      opts[key] = value
    end
  end
  return opts
end

local function sorted_keys(tbl)
  local keys = {}
  for key in pairs(tbl) do
    keys[#keys + 1] = key
  end
  table.sort(keys)
  return keys
end

M.FNV_OFFSET = 0xcbf29ce484222325ULL

-- FNV-1a 64 of `data`, continuing from the state `h`.
function M.fnv(h, data)
  for i = 1, #data do
    h = bit.bxor(h, data:byte(i)) * 0x100000001b3ULL
  end
  return h
end

-- Alertmanager's fingerprint: FNV-1a 64 over sorted name\xff value\xff.
function M.fingerprint(labels)
  local h = M.FNV_OFFSET
  for _, key in ipairs(sorted_keys(labels)) do
    h = M.fnv(h, key .. "\255" .. labels[key] .. "\255")
  end
  return bit.tohex(h, 16)
end

function M.quote(s)
  return '"' .. s:gsub('[\\"]', "\\%0") .. '"'
end

-- A JSON object of string values, keys sorted (as Go marshals a map).
function M.object(tbl)
  local parts = {}
  for _, key in ipairs(sorted_keys(tbl)) do
    parts[#parts + 1] = M.quote(key) .. ":" .. M.quote(tbl[key])
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

M.started = os.date("!%Y-%m-%dT%H:%M:%SZ")

function M.alert(labels, annotations)
  return '{"status":"firing","labels":' .. M.object(labels)
    .. ',"annotations":' .. M.object(annotations)
    .. ',"startsAt":"' .. M.started .. '","endsAt":"0001-01-01T00:00:00Z"'
    .. ',"generatorURL":"http://prometheus:9090/graph?g0.expr=kube_pod_container_status_restarts_total%3E0&g0.tab=1"'
    .. ',"fingerprint":"' .. M.fingerprint(labels) .. '"}'
end

-- Labels every alert of a list has, with the same value.
local function common(list)
  local first = list[1]
  local shared = {}
  for key, value in pairs(first) do
    local same = true
    for i = 2, #list do
      if list[i][key] ~= value then
        same = false
        break
      end
    end
    if same then
      shared[key] = value
    end
  end
  return shared
end

-- One notification: alerts given as {labels=..., annotations=...}, grouped
-- by alertname and namespace as a typical route does.
function M.body(alerts)
  local encoded, labels, annotations = {}, {}, {}
  for i, a in ipairs(alerts) do
    encoded[i] = M.alert(a.labels, a.annotations)
    labels[i] = a.labels
    annotations[i] = a.annotations
  end
  local first = alerts[1].labels
  local group = { alertname = first.alertname, namespace = first.namespace }
  local key = "{}:{alertname=" .. M.quote(group.alertname) .. ", namespace=" .. M.quote(group.namespace) .. "}"
  return '{"receiver":"alertgateway","status":"firing","alerts":[' .. table.concat(encoded, ",")
    .. '],"groupLabels":' .. M.object(group)
    .. ',"commonLabels":' .. M.object(common(labels))
    .. ',"commonAnnotations":' .. M.object(common(annotations))
    .. ',"externalURL":"http://alertmanager:9093","version":"4","groupKey":' .. M.quote(key)
    .. ',"truncatedAlerts":0}'
end

-- A crash-looping pod: the typical alert of a Kubernetes cluster.
function M.pod_alert(alertname, namespace, pod)
  return {
    labels = {
      alertname = alertname,
      container = "api",
      job = "kube-state-metrics",
      namespace = namespace,
      pod = pod,
      severity = "critical",
    },
    annotations = {
      runbook_url = "https://runbooks.example.com/" .. alertname,
      summary = "Pod " .. namespace .. "/" .. pod .. " is crash looping",
    },
  }
end

function M.headers(opts)
  return {
    ["Authorization"] = "Bearer " .. (opts.token or ""),
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "Alertmanager/0.25.0",
  }
end

local function errors_json(errors)
  return string.format(
    '{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
    errors.connect, errors.read, errors.write, errors.status, errors.timeout
  )
end

-- Exact percentiles (microseconds) from wrk's own histogram, one line.
function M.done(summary, latency, requests)
  local pct = {}
  for _, p in ipairs({ 50, 75, 90, 95, 99, 99.9 }) do
    pct[#pct + 1] = string.format('"%s":%d', tostring(p), latency:percentile(p))
  end
  io.write(string.format(
    'BENCH_RESULT {"duration_us":%d,"requests":%d,"bytes":%d,"errors":%s,'
      .. '"latency_us":{%s,"min":%d,"max":%d,"mean":%.1f}}\n',
    summary.duration, summary.requests, summary.bytes, errors_json(summary.errors),
    table.concat(pct, ","), latency.min, latency.max, latency.mean
  ))
end

return M
