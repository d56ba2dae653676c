"""Lua scripts. Each touches the keys of one bucket (one hash slot) only."""

# One transition of one execution, all of it or nothing:
#
# KEYS[1] execution hash, [2] history stream, [3] the bucket's timers,
# [4] the bucket's index, [5] the bucket's members (fencing), [6] traces,
# [7] the bucket's waits (inbox), [8..] the command queues the transition
# writes to or acknowledges.
#
# ARGV, read in order by `arg()`:
#   expected revision (0 = create), replica id, replica epoch, transaction id,
#   state JSON, follow-ups ('' none), their flush due ms, ttl ms (0 = keep,
#   -1 = remove the expiry: a finished execution resumed),
#   created ms (0 = not a creation), bus channel, notification ('' none),
#   consumer group, bucket,
#   n history entries, then each entry,
#   n timers to add, then (timer id, due ms) pairs,
#   n timers to remove, then each timer id,
#   n commands, then (queue key index, worker name, command, claim 0|1) rows,
#   ack queue key index (0 = none), ack entry id,
#   n cancelled commands, then each as "<command id>|<reason>",
#   trace command id ('' none), trace JSON, trace ttl ms (set when the
#   execution ends: the traces of a running one are kept like its state),
#   its waits for a signal ('' unchanged, '-' none now, else their JSON).
#
# Returns {-1} when the revision does not match, {-2} when the replica has
# been fenced off (its epoch is not the bucket's), else
# {revision, then (key index, entry id, command) per command claimed for
# this replica's consumer}.
COMMIT = """
local n = 0
local function arg() n = n + 1; return ARGV[n] end
local expected = tonumber(arg())
local replica, epoch = arg(), arg()
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if rev ~= expected then return {-1} end
if redis.call('HGET', KEYS[5], replica) ~= epoch then return {-2} end
rev = rev + 1
local tx = arg()
redis.call('HSET', KEYS[1], 's', arg(), 'rev', rev)
local followups, flush_due = arg(), arg()
if followups ~= '' then
  redis.call('HSET', KEYS[1], 'ob:' .. rev, followups)
  redis.call('ZADD', KEYS[3], flush_due, tx .. '|flush')
end
local ttl, created = tonumber(arg()), arg()
local bus, notification, group, bucket = arg(), arg(), arg(), arg()
local count = tonumber(arg())
if count > 0 then
  local fields = {}
  for i = 1, count do
    fields[#fields + 1] = tostring(i)
    fields[#fields + 1] = arg()
  end
  redis.call('XADD', KEYS[2], '*', unpack(fields))
end
count = tonumber(arg())
if count > 0 then
  local pairs_ = {}
  for i = 1, count do
    local timer = arg()
    pairs_[#pairs_ + 1] = arg()
    pairs_[#pairs_ + 1] = tx .. '|' .. timer
  end
  redis.call('ZADD', KEYS[3], unpack(pairs_))
end
count = tonumber(arg())
if count > 0 then
  local members = {}
  for i = 1, count do members[i] = tx .. '|' .. arg() end
  redis.call('ZREM', KEYS[3], unpack(members))
end
if created ~= '0' then redis.call('ZADD', KEYS[4], created, tx) end
local out = {rev}
count = tonumber(arg())
for i = 1, count do
  local k, worker, command, claim = tonumber(arg()), arg(), arg(), arg()
  redis.call('XADD', KEYS[k], '*', 'c', command)
  local taken = false
  if claim == '1' then
    local ok, reply = pcall(redis.call, 'XREADGROUP', 'GROUP', group, replica,
      'COUNT', 1, 'STREAMS', KEYS[k], '>')
    if not ok then
      redis.call('XGROUP', 'CREATE', KEYS[k], group, '0', 'MKSTREAM')
      reply = redis.call('XREADGROUP', 'GROUP', group, replica,
        'COUNT', 1, 'STREAMS', KEYS[k], '>')
    end
    if reply then
      for _, entry in ipairs(reply[1][2]) do
        out[#out + 1] = k
        out[#out + 1] = entry[1]
        out[#out + 1] = entry[2][2]
        taken = true
      end
    end
  end
  if not taken then redis.call('PUBLISH', bus, 'w' .. bucket .. '|' .. worker) end
end
local ack_key, ack_id = tonumber(arg()), arg()
if ack_key > 0 then
  redis.call('XACK', KEYS[ack_key], group, ack_id)
  redis.call('XDEL', KEYS[ack_key], ack_id)
end
count = tonumber(arg())
for i = 1, count do redis.call('PUBLISH', bus, 'c' .. arg()) end
local trace_id, trace, trace_ttl = arg(), arg(), arg()
if trace_id ~= '' then redis.call('HSET', KEYS[6], trace_id, trace) end
local waits = arg()
if waits == '-' then
  redis.call('HDEL', KEYS[7], tx)
elseif waits ~= '' then
  redis.call('HSET', KEYS[7], tx, waits)
end
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[6], trace_ttl)
elseif ttl < 0 then
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
end
if notification ~= '' then redis.call('PUBLISH', bus, 'e' .. notification) end
return out
"""

# KEYS: execution, the bucket's timers. ARGV: transaction id, the follow-up
# fields carried out. Forgets them, and the flush timer once none is left.
CLEAR_FOLLOWUPS = """
for i = 2, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
local left = false
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 3) == 'ob:' then left = true; break end
end
if not left then redis.call('ZREM', KEYS[2], ARGV[1] .. '|flush') end
return 0
"""

# KEYS: the bucket's timers. ARGV: now ms, lease ms, limit. Claims due timers
# by moving them `lease` into the future (a claimer that dies lets them fire
# again); returns {due members, the earliest score left or false}.
CLAIM_TIMERS = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local later = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], later, member)
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {due, first[2] or false}
"""

# One change of one schedule, with its timer (all in the schedule's bucket).
# KEYS: the bucket's schedules, their revisions, the bucket's timers.
# ARGV: schedule id, mode, expected revision, record JSON, timer due ms
# (-1 = no timer), timer member. Modes:
#   create: only if the schedule does not exist;
#   update: only at the expected revision (the revision goes up);
#   timer:  only at the expected revision, sets the timer alone;
#   delete: removes the schedule (if it exists) and its timer.
# Returns the new revision (the current one for `timer`, 1 for a done
# delete), 0 when the schedule exists (create) or does not (delete), -1 on a
# revision conflict.
SCHEDULE = """
local id, mode, expected = ARGV[1], ARGV[2], tonumber(ARGV[3])
local exists = redis.call('HEXISTS', KEYS[1], id) == 1
local rev = tonumber(redis.call('HGET', KEYS[2], id) or '0')
if mode == 'delete' then
  redis.call('ZREM', KEYS[3], ARGV[6])
  if not exists then return 0 end
  redis.call('HDEL', KEYS[1], id)
  return 1
end
if mode == 'create' then
  if exists then return 0 end
elseif not exists or rev ~= expected then
  return -1
end
if mode ~= 'timer' then
  rev = rev + 1
  redis.call('HSET', KEYS[1], id, ARGV[4])
  redis.call('HSET', KEYS[2], id, rev)
end
local due = tonumber(ARGV[5])
if due < 0 then
  redis.call('ZREM', KEYS[3], ARGV[6])
else
  redis.call('ZADD', KEYS[3], due, ARGV[6])
end
return rev
"""

SCRIPTS = {
    "commit": COMMIT,
    "clear_followups": CLEAR_FOLLOWUPS,
    "claim_timers": CLAIM_TIMERS,
    "schedule": SCHEDULE,
}
