-- Append one event to a channel's history and, unless told to wait, notify it live,
-- atomically.
-- KEYS[1]  history stream of the channel
-- ARGV[1]  live pub/sub channel name
-- ARGV[2]  SSE event name
-- ARGV[3]  payload JSON (one line)
-- ARGV[4]  history max length (entries)
-- ARGV[5]  '~' for approximate (fast) trimming, '=' for exact
-- ARGV[6]  history max age in milliseconds, 0 for none
-- ARGV[7]  publish token: unique to this event (random, or the caller's idempotency
--          key), kept in the entry ('i')
-- ARGV[8]  how many ms back to look for an entry with the token: 0 on a first attempt
--          without a key; on a retry, back to the first attempt; with a key, its window
-- ARGV[9]  'PUBLISH' (one server), 'SPUBLISH' (cluster: the live channel shares the
--          key's slot), or '' when the caller sends the notification itself after WAIT
-- ARGV[10] '1' when the caller sends WAIT right after this script on the same
--          connection, else '0'
-- Returns {id, prev}: the new entry's id and its predecessor's; on a retry, those of
-- the entry an earlier attempt appended (its reply was lost): a retried publish never
-- appends twice.
--
-- Each entry records its predecessor's id ('p'), so a reader can tell
-- exactly whether anything between its cursor and the next entry is gone.
local stream = KEYS[1]
local token = ARGV[7]
local lookback_ms = tonumber(ARGV[8])
if lookback_ms > 0 then
  -- Entry ids never run behind the server clock, so an entry appended by an
  -- earlier attempt has an id at or after now - lookback.
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local oldest = string.format('%d', math.max(0, now_ms - lookback_ms))
  local newest = '+'
  while true do
    local page = redis.call('XREVRANGE', stream, newest, oldest, 'COUNT', 256)
    for _, entry in ipairs(page) do
      local fields = entry[2]
      local found = false
      local prev = '0-0'
      for i = 1, #fields, 2 do
        if fields[i] == 'i' and fields[i + 1] == token then
          found = true
        elseif fields[i] == 'p' then
          prev = fields[i + 1]
        end
      end
      if found then
        if ARGV[10] == '1' then
          -- WAIT counts replicas that caught up with this connection's last write. This
          -- connection may never have written the entry (a new connection, a new master
          -- after a failover), so write now: setting the stream's last id to itself
          -- changes nothing but is replicated after the entry, so WAIT covers the entry.
          local info = redis.call('XINFO', 'STREAM', stream)
          for i = 1, #info, 2 do
            if info[i] == 'last-generated-id' then
              redis.call('XSETID', stream, info[i + 1])
              break
            end
          end
        end
        return {entry[1], prev}
      end
    end
    if #page < 256 then
      break
    end
    newest = '(' .. page[#page][1]
  end
end
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
  'e', ARGV[2], 'd', ARGV[3], 'p', prev, 'i', token)
local max_age_ms = tonumber(ARGV[6])
if max_age_ms > 0 then
  local now = redis.call('TIME')
  local min_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - max_age_ms
  if min_ms > 0 then
    redis.call('XTRIM', stream, 'MINID', ARGV[5], string.format('%d', min_ms))
  end
end
if ARGV[9] == 'PUBLISH' or ARGV[9] == 'SPUBLISH' then
  redis.call(ARGV[9], ARGV[1], id .. '\n' .. prev .. '\n' .. ARGV[2] .. '\n' .. ARGV[3])
end
return {id, prev}
