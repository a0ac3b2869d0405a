-- Loads the shared entries (episodes, correlation groups) a decision needs.
--
-- KEYS: entries.
-- Returns, per key, its version (0 when absent), its document (false when
-- absent) and its delivery record (false when none).
local out = {}
for i = 1, #KEYS do
  local got = redis.call('HMGET', KEYS[i], 'v', 'd', 'o')
  out[#out + 1] = got[1] or '0'
  out[#out + 1] = got[2] or false
  out[#out + 1] = got[3] or false
end
return out
