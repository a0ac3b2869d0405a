-- Records how the delivery of an episode's forward went, beside the document
-- (not in it, so that no decision has to be retried for it), only while the
-- episode exists.
--
-- KEYS[1]: an episode.
-- ARGV: the idempotency key of what was delivered, and how it went.
-- Returns 1 when recorded, 0 when the episode is gone.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'o', ARGV[1] .. '\n' .. ARGV[2])
return 1
