-- Gives leases back.
--
-- KEYS: leases.
-- ARGV: the replica.
-- Deletes those still in its name; returns how many.
local released = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    released = released + 1
  end
end
return released
