"""Lua scripts. Each touches keys of one hash slot only."""

# KEYS: execution, history. ARGV: expected revision (0 = create), state JSON,
# outbox JSON ('' for none), ttl ms (0 = keep), then history entries.
# Returns the new revision, or -1 when the revision did not match.
COMMIT = """
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if rev ~= tonumber(ARGV[1]) then return -1 end
rev = rev + 1
redis.call('HSET', KEYS[1], 's', ARGV[2], 'rev', rev)
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'ob', ARGV[3])
else
  redis.call('HDEL', KEYS[1], 'ob')
end
for i = 5, #ARGV do
  redis.call('XADD', KEYS[2], '*', 'e', ARGV[i])
end
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return rev
"""

# KEYS: execution. ARGV: revision whose outbox was carried out.
CLEAR_OUTBOX = """
if redis.call('HGET', KEYS[1], 'rev') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'ob')
end
return 0
"""

# KEYS: timers. ARGV: now ms, lease ms, limit. Claims due timers by moving
# them `lease` into the future; a claimer that dies lets them fire again.
CLAIM_TIMERS = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local later = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], later, member)
end
return due
"""
