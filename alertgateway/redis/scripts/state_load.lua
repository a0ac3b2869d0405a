-- Loads the shared entries (episodes, correlation groups) a decision needs,
-- and the head of each group's list of waiting storm members.
--
-- KEYS: the entries; then the waiting lists of the groups among them.
-- ARGV[1]: how many waiting members to read from the head of each list; then
-- one value per entry: the index in KEYS of its waiting list (0 for an
-- episode).
-- Returns five values per entry: its version ('0' when absent), its document
-- (false when absent), its delivery record (false when none), how many
-- members its waiting list holds, and the first of them (a list).
local head = tonumber(ARGV[1])
local out = {}
for i = 1, #ARGV - 1 do
  local got = redis.call('HMGET', KEYS[i], 'v', 'd', 'o')
  out[#out + 1] = got[1] or '0'
  out[#out + 1] = got[2] or false
  out[#out + 1] = got[3] or false
  local list = tonumber(ARGV[i + 1])
  if list > 0 then
    out[#out + 1] = redis.call('LLEN', KEYS[list])
    out[#out + 1] = head > 0 and redis.call('LRANGE', KEYS[list], 0, head - 1) or {}
  else
    out[#out + 1] = 0
    out[#out + 1] = {}
  end
end
return out
