"""Lua scripts. Each touches the keys of one bucket (one hash slot) only, or
those of the shared limits (their own slot)."""

# One transition of one execution, all of it or nothing:
#
# KEYS[1] execution hash, [2] history stream, [3] the bucket's timers,
# [4] the bucket's index, [5] the bucket's members (fencing), [6] traces,
# [7] the bucket's waits (inbox), [8] output stream, [9] the bucket's usage
# sums, [10..] the command queues the transition writes to or acknowledges.
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
#   its waits for a signal ('' unchanged, '-' none now, else their JSON),
#   workflow name, usage to add (input tokens, output tokens, nano-USD),
#   n output epochs, then (lane, attempt, step path, compensation 0|1) rows:
#   the attempt whose output a lane (command id without its attempt) accepts
#   from now on and the path it is recorded under ('oa:<lane>' =
#   '<attempt>|<path>'), with a rewind entry in the output stream after
#   attempt 1.
#
# Lists of any length (a transition starting a parallel group of maps
# dispatches thousands of commands) are passed to Redis in calls of at most
# 4,000 values: Lua's unpack() stops at about 8,000 ("too many results to
# unpack"), and a script that errors half-way keeps the writes it made. The
# history of such a transition is several stream entries, read as one list.
#
# Returns {-1} when the revision does not match, {-2} when the replica has
# been fenced off (its epoch is not the bucket's), else
# {revision, then (key index, entry id, command) per command claimed for
# this replica's consumer}.
# The number of the last entry of an output stream (entries are numbered
# from 1 with no holes, so a reader can tell what the cap dropped).
_LAST_OUTPUT_NUMBER = """
local function last_output_number(key)
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if last[1] then return tonumber(last[1][2][2]) end
  return 0
end
"""

# Calls `command key [prefix...] values...` in chunks of at most 4,000
# values (an even number, so field/value and score/member pairs stay whole).
_IN_CHUNKS = """
local function in_chunks(command, key, prefix, values)
  for first = 1, #values, 4000 do
    local last = math.min(first + 3999, #values)
    if prefix then
      redis.call(command, key, prefix, unpack(values, first, last))
    else
      redis.call(command, key, unpack(values, first, last))
    end
  end
end
"""

COMMIT = (
    _LAST_OUTPUT_NUMBER
    + _IN_CHUNKS
    + """
local n = 0
local function arg() n = n + 1; return ARGV[n] end
local expected = tonumber(arg())
local replica, epoch = arg(), arg()
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if rev ~= expected then return {-1} end
if redis.call('HGET', KEYS[5], replica) ~= epoch then return {-2} end
rev = rev + 1
local tx = arg()
-- The execution hash's fields this transition writes, in one HSET at the end.
local state_fields = {'s', arg(), 'rev', rev}
local followups, flush_due = arg(), arg()
if followups ~= '' then
  state_fields[#state_fields + 1] = 'ob:' .. rev
  state_fields[#state_fields + 1] = followups
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
  in_chunks('XADD', KEYS[2], '*', fields)
end
count = tonumber(arg())
if count > 0 then
  local pairs_ = {}
  for i = 1, count do
    local timer = arg()
    pairs_[#pairs_ + 1] = arg()
    pairs_[#pairs_ + 1] = tx .. '|' .. timer
  end
  in_chunks('ZADD', KEYS[3], false, pairs_)
end
count = tonumber(arg())
if count > 0 then
  local members = {}
  for i = 1, count do members[i] = tx .. '|' .. arg() end
  in_chunks('ZREM', KEYS[3], false, members)
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
local name, used_in, used_out, used_cost = arg(), tonumber(arg()), tonumber(arg()), tonumber(arg())
if used_in > 0 then redis.call('HINCRBY', KEYS[9], name .. '|in', used_in) end
if used_out > 0 then redis.call('HINCRBY', KEYS[9], name .. '|out', used_out) end
if used_cost > 0 then redis.call('HINCRBY', KEYS[9], name .. '|cost', used_cost) end
count = tonumber(arg())
for i = 1, count do
  local lane, attempt, step, comp = arg(), arg(), arg(), arg()
  state_fields[#state_fields + 1] = 'oa:' .. lane
  state_fields[#state_fields + 1] = attempt .. '|' .. step
  if tonumber(attempt) > 1 then
    redis.call('XADD', KEYS[8], '*', 'n', last_output_number(KEYS[8]) + 1, 's', step,
      'a', attempt, 'c', comp, 'e', 'r')
  end
end
in_chunks('HSET', KEYS[1], false, state_fields)
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[6], trace_ttl)
  redis.call('PEXPIRE', KEYS[8], ttl)
elseif ttl < 0 then
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
  redis.call('PERSIST', KEYS[8])
end
if notification ~= '' then redis.call('PUBLISH', bus, 'e' .. notification) end
return out
"""
)

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

# Appends chunks of step output to one execution's output stream.
# KEYS: output stream, execution hash. ARGV: cap (entries kept, approx.),
# bus channel, transaction id, then rows of (lane, attempt, step,
# compensation 0|1, encoding t|b, kind, data). A row whose attempt is older
# than the one its lane accepts (see COMMIT) is refused; the others are
# recorded under the lane's step path (the row's step when it has none). Returns {-1} when
# the execution is gone, else the entry id of each row ('' if refused).
# The stream expires with the execution (PTTL copied once it has one).
APPEND_OUTPUT = (
    _LAST_OUTPUT_NUMBER
    + """
if redis.call('EXISTS', KEYS[2]) == 0 then return {-1} end
local cap = ARGV[1]
local n = last_output_number(KEYS[1])
local accepts, paths = {}, {}
local out = {}
for i = 4, #ARGV, 7 do
  local lane, attempt = ARGV[i], ARGV[i + 1]
  if accepts[lane] == nil then
    local epoch = redis.call('HGET', KEYS[2], 'oa:' .. lane) or '0|'
    local a, path = string.match(epoch, '^(%d+)|(.*)$')
    accepts[lane] = tonumber(a or epoch)
    paths[lane] = (path ~= nil and path ~= '') and path or ARGV[i + 2]
  end
  if accepts[lane] > tonumber(attempt) then
    out[#out + 1] = ''
  else
    n = n + 1
    out[#out + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', cap, '*', 'n', n,
      's', paths[lane], 'a', attempt, 'c', ARGV[i + 3], 'e', ARGV[i + 4],
      'k', ARGV[i + 5], 'd', ARGV[i + 6])
  end
end
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
redis.call('PUBLISH', ARGV[2], 'o' .. ARGV[3])
return out
"""
)
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

# Shared limits (all keys under the tag {l}). The time is Redis's own, so
# every replica measures rates on one clock. Requests are counted in a
# sliding window (a log of the last period's starts: exact, at most `r`
# entries per key), tokens in a bucket refilled continuously. A declared limit is JSON
# {r: requests, t: tokens, p: period ms, c: max concurrent, b: backoff ms};
# a key takes the limit declared for it, else the one of its longest
# declared prefix (`<prefix>*`), else none.
_LIMIT_OF = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function limit_of(key)
  local declared = key
  local raw = redis.call('HGET', KEYS[1], key)
  local i = #key
  while not raw and i >= 0 do
    declared = string.sub(key, 1, i) .. '*'
    raw = redis.call('HGET', KEYS[1], declared)
    i = i - 1
  end
  if raw then return cjson.decode(raw), declared end
  return nil
end
local function num(x) return string.format('%.17g', x) end
"""

# Takes a command's place in every key it names, all or nothing.
# KEYS[1] the declarations, then per key its state hash, holders set and
# starts log (sorted set of the commands started in the last period).
# ARGV: holder (command id), lease end ms, tokens to reserve, then the keys.
# Returns {1} when taken, else {0, ms to wait at least, key, reason, the
# limit as declared (the key or its prefix)} with reason one of backoff,
# concurrency, requests, tokens (a holder already present, e.g. a
# redelivered command, keeps its place).
ACQUIRE_LIMITS = (
    _LIMIT_OF
    + """
local now = now_ms()
local holder, lease, tokens = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local plans = {}
for i = 4, #ARGV do
  local key, state, holders, starts = ARGV[i], KEYS[3 * i - 10], KEYS[3 * i - 9], KEYS[3 * i - 8]
  local l, declared = limit_of(key)
  if l then
    local plan = {state = state, holders = holders, starts = starts, l = l}
    local wait, reason = 0, ''
    local function block(ms, why)
      if ms > wait then wait, reason = ms, why end
    end
    local until_ = tonumber(redis.call('HGET', state, 'until') or '0')
    if until_ > now then block(until_ - now, 'backoff') end
    if l.c > 0 then
      redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
      if not redis.call('ZSCORE', holders, holder)
          and redis.call('ZCARD', holders) >= l.c then
        local first = redis.call('ZRANGE', holders, 0, 0, 'WITHSCORES')
        block(math.max(1, tonumber(first[2]) - now), 'concurrency')
      end
    end
    if l.r > 0 then
      redis.call('ZREMRANGEBYSCORE', starts, '-inf', now - l.p)
      if redis.call('ZCARD', starts) >= l.r then
        local first = redis.call('ZRANGE', starts, 0, 0, 'WITHSCORES')
        block(math.max(1, tonumber(first[2]) + l.p - now), 'requests')
      end
    end
    if l.t > 0 and tokens > 0 then
      local level = tonumber(redis.call('HGET', state, 'tok') or l.t)
      local since = tonumber(redis.call('HGET', state, 'ts') or now)
      level = math.min(l.t, level + (now - since) * l.t / l.p)
      local need = math.min(tokens, l.t)
      if level < need then
        block(math.ceil((need - level) * l.p / l.t), 'tokens')
      else
        plan.level = level - tokens
      end
    end
    if wait > 0 then return {0, wait, key, reason, declared} end
    plans[#plans + 1] = plan
  end
end
for _, plan in ipairs(plans) do
  local l = plan.l
  if l.r > 0 then
    redis.call('ZADD', plan.starts, now, holder)
    redis.call('PEXPIRE', plan.starts, l.p + 1000)
  end
  if plan.level then redis.call('HSET', plan.state, 'tok', num(plan.level), 'ts', now) end
  if plan.level then redis.call('PEXPIRE', plan.state, l.p + l.b + 1000) end
  if l.c > 0 then
    redis.call('ZADD', plan.holders, lease, holder)
    local ttl = lease - now + 1000
    if redis.call('PTTL', plan.holders) < ttl then redis.call('PEXPIRE', plan.holders, ttl) end
  end
end
return {1}
"""
)

# Gives back a command's places when its attempt ends. KEYS as for
# ACQUIRE_LIMITS. ARGV: holder, tokens to give back (the reservation minus
# the usage reported; negative takes more), back off 0|1 (the worker
# reported RateLimited: nothing starts under the keys for their backoff),
# then the keys.
RELEASE_LIMITS = (
    _LIMIT_OF
    + """
local now = now_ms()
local holder, refund, backoff = ARGV[1], tonumber(ARGV[2]), ARGV[3]
for i = 4, #ARGV do
  local key, state, holders = ARGV[i], KEYS[3 * i - 10], KEYS[3 * i - 9]
  redis.call('ZREM', holders, holder)
  local l = limit_of(key)
  if l then
    if refund ~= 0 and l.t > 0 then
      local level = redis.call('HGET', state, 'tok')
      if level then redis.call('HSET', state, 'tok', num(tonumber(level) + refund)) end
    end
    if backoff == '1' then
      redis.call('HSET', state, 'until', now + l.b)
      redis.call('PEXPIRE', state, l.p + l.b + 1000)
    end
  end
end
return 0
"""
)

# Deletes a consumer of a command queue's group when nothing is pending at
# it: XGROUP DELCONSUMER drops what is, and nobody could claim those
# commands any more (a replica fenced off and reaped while it was alive may
# have taken more since). KEYS[1] the queue. ARGV: group, consumer.
# Returns 1 when deleted, 0 when kept (or there is no such group).
DELETE_CONSUMER = """
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if not ok or #pending > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

SCRIPTS = {
    "commit": COMMIT,
    "clear_followups": CLEAR_FOLLOWUPS,
    "claim_timers": CLAIM_TIMERS,
    "append_output": APPEND_OUTPUT,
    "schedule": SCHEDULE,
    "acquire_limits": ACQUIRE_LIMITS,
    "release_limits": RELEASE_LIMITS,
    "delete_consumer": DELETE_CONSUMER,
}
