-- Token buckets: allows a request only if every bucket that applies to it has
-- a token, and then takes one from each.
--
-- KEYS: the buckets that apply to a request.
-- ARGV[1]: now (seconds); then per bucket its refill rate (tokens a second)
-- and capacity.
-- Returns {allowed, index of the deciding bucket, tokens remaining, seconds
-- to wait, seconds until full}; numbers that may be fractional are strings,
-- as Redis truncates Lua numbers in replies.
local now = tonumber(ARGV[1])
local tokens, rates, caps = {}, {}, {}
local worst, worst_wait = 0, -1
for i = 1, #KEYS do
  local rate, cap = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', KEYS[i], 't', 'u')
  local t = tonumber(state[1]) or cap
  local updated = tonumber(state[2]) or now
  local elapsed = math.max(0, now - updated)
  t = math.min(cap, t + elapsed * rate)
  tokens[i], rates[i], caps[i] = t, rate, cap
  if t < 1 then
    local wait = (1 - t) / rate
    if wait > worst_wait then
      worst, worst_wait = i, wait
    end
  end
end
if worst > 0 then
  local reset = (caps[worst] - tokens[worst]) / rates[worst]
  return {0, worst, 0, tostring(worst_wait), tostring(reset)}
end
local tightest = 1
for i = 1, #KEYS do
  tokens[i] = tokens[i] - 1
  redis.call('HSET', KEYS[i], 't', tostring(tokens[i]), 'u', tostring(now))
  -- Forgotten once full again: an idle bucket is the same as none.
  redis.call('PEXPIRE', KEYS[i], math.ceil((caps[i] - tokens[i]) / rates[i] * 1000) + 1000)
  if tokens[i] < tokens[tightest] then
    tightest = i
  end
end
local reset = (caps[tightest] - tokens[tightest]) / rates[tightest]
return {1, tightest, math.floor(tokens[tightest]), '0', tostring(reset)}
