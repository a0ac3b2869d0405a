-- Takes back a decision whose forwards could not be queued, entry by entry
-- (not all or nothing: another replica's later write to one entry must not
-- keep the others from being restored).
--
-- KEYS: the entries; then the waiting list of each group among them, in their
-- order.
-- ARGV[1]: the key prefix; then five values per entry: its kind, the version
-- the decision wrote, the idempotency key it forwarded ('' if none), the
-- document to restore ('' deletes), its time to live in ms; a group's are followed by its name, '1'
-- if the restored group is in a storm, how many members the decision appended
-- to its waiting list, how many it took from the head, and those (to put
-- back).
-- Returns how many entries were restored.
--
-- An entry untouched since is restored (a group's waiting list is only ever
-- written with it).  An episode is restored too while what it last forwarded
-- is still the undone forward, whatever else changed: otherwise the sender's
-- retry would be a duplicate of a forward that never left.
local p = ARGV[1]
local restored = 0
local lists = 0
local entries = {}
local at = 2
local count = 0
while at <= #ARGV do
  count = count + 1
  local e = {
    key = KEYS[count], kind = ARGV[at], version = ARGV[at + 1], forwarded = ARGV[at + 2], data = ARGV[at + 3],
    ttl = ARGV[at + 4],
  }
  at = at + 5
  if e.kind == 'g' then
    e.name, e.storm, e.appended, e.taken = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3])
    e.from = at + 4
    at = e.from + e.taken
  end
  entries[count] = e
end
for i = 1, count do
  local e = entries[i]
  if e.kind == 'g' then
    lists = lists + 1
    e.list = KEYS[count + lists]
  end
  local current = redis.call('HGET', e.key, 'v') or '0'
  local mine = current == e.version
  if e.kind == 'e' and not mine then
    mine = e.forwarded ~= '' and redis.call('HGET', e.key, 'f') == e.forwarded
  end
  if mine then
    restored = restored + 1
    if e.data == '' then
      redis.call('DEL', e.key)
    else
      redis.call('HSET', e.key, 'v', redis.call('INCR', p .. 'version'), 'd', e.data, 'f', '')
      redis.call('HDEL', e.key, 'o')
      redis.call('PEXPIRE', e.key, e.ttl)
    end
    if e.kind == 'g' then
      if e.appended > 0 then
        redis.call('LTRIM', e.list, 0, -1 - e.appended)
      end
      for j = e.from + e.taken - 1, e.from, -1 do
        redis.call('LPUSH', e.list, ARGV[j])
      end
      if e.data == '' then
        redis.call('DEL', e.list)
      else
        redis.call('PEXPIRE', e.list, e.ttl)
      end
      if e.storm == '1' then
        redis.call('SADD', p .. 'storms', e.name)
      else
        redis.call('SREM', p .. 'storms', e.name)
      end
    end
  end
end
return restored
