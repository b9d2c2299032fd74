-- Read a page of a channel's history together with the stream's tip, atomically.
-- KEYS[1]  history stream of the channel
-- ARGV[1]  forwards, the XRANGE start: '-' for the earliest retained entry, '(<id>' for
--          after <id>; backwards, the XREVRANGE end: '+' for the newest, '(<id>' for
--          before <id>
-- ARGV[2]  page size; 0 returns only the tip
-- ARGV[3]  absent (forwards: the entries after the start, oldest first) or 'before'
--          (backwards: the entries just before the end, newest first)
-- Returns {tip, entries}: tip is the last id ever generated ('0-0' when the
-- stream does not exist); entries are XRANGE (XREVRANGE) replies.
-- Reading both at once lets the caller tell "caught up" from "trimmed" from
-- "history lost" without a race against concurrent publishes.
local stream = KEYS[1]
local tip = '0-0'
if redis.call('EXISTS', stream) == 0 then
  return {tip, {}}
end
local info = redis.call('XINFO', 'STREAM', stream)
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then
    tip = info[i + 1]
    break
  end
end
local count = tonumber(ARGV[2])
if count == 0 then
  return {tip, {}}
end
if ARGV[3] == 'before' then
  return {tip, redis.call('XREVRANGE', stream, ARGV[1], '-', 'COUNT', count)}
end
return {tip, redis.call('XRANGE', stream, ARGV[1], '+', 'COUNT', count)}
