-- Sets the shared length to what the streams hold (an operator may have
-- trimmed them).
--
-- KEYS[1]: the shared length; KEYS[2..]: every partition's stream.
-- Returns the length.
local total = 0
for i = 2, #KEYS do
  total = total + redis.call('XLEN', KEYS[i])
end
redis.call('SET', KEYS[1], total)
return total
