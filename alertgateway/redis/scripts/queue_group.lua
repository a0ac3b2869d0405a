-- Creates the consumer group, reading from the start, on streams where it is
-- missing.
--
-- KEYS: streams.
-- ARGV: the group.
-- Returns 1.
for i = 1, #KEYS do
  local reply = redis.pcall('XGROUP', 'CREATE', KEYS[i], ARGV[1], '0', 'MKSTREAM')
  if type(reply) == 'table' and reply.err and not string.find(reply.err, 'BUSYGROUP', 1, true) then
    return redis.error_reply(reply.err)
  end
end
return 1
