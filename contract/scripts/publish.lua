-- Append one event to a channel's history and publish it live, atomically.
-- KEYS[1]  history stream of the channel
-- ARGV[1]  live pub/sub channel name
-- ARGV[2]  SSE event name
-- ARGV[3]  payload JSON (one line)
-- ARGV[4]  history max length (entries)
-- ARGV[5]  '~' for approximate (fast) trimming, '=' for exact
-- ARGV[6]  history max age in milliseconds, 0 for none
-- Returns the new entry id.
--
-- Each entry records its predecessor's id ('p'), so a reader can tell
-- exactly whether anything between its cursor and the next entry is gone.
local stream = KEYS[1]
local prev = '0-0'
if redis.call('EXISTS', stream) == 1 then
  local info = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      prev = info[i + 1]
      break
    end
  end
end
local id = redis.call('XADD', stream, 'MAXLEN', ARGV[5], ARGV[4], '*',
  'e', ARGV[2], 'd', ARGV[3], 'p', prev)
local max_age_ms = tonumber(ARGV[6])
if max_age_ms > 0 then
  local now = redis.call('TIME')
  local min_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - max_age_ms
  if min_ms > 0 then
    redis.call('XTRIM', stream, 'MINID', ARGV[5], string.format('%d', min_ms))
  end
end
redis.call('PUBLISH', ARGV[1], id .. '\n' .. prev .. '\n' .. ARGV[2] .. '\n' .. ARGV[3])
return id
