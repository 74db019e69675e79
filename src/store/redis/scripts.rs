//! The Lua scripts `RedisStore` runs: the sliding window of `MemoryStore`, in Redis.

/// Checks and records every limit of one call atomically. See the `RedisStore` docs for
/// the data layout; the algorithm is `MemoryStore`'s sliding window, in Lua.
pub(super) const ACQUIRE: &str = r"
local mode = ARGV[1]
local now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[2])
end
local heads, widths = {}, {}
local pending = {}
local refused, longest = 0, -1
for i = 1, #KEYS do
  local key = KEYS[i]
  local width = tonumber(ARGV[3 * i])
  local max = tonumber(ARGV[3 * i + 1])
  local cost = tonumber(ARGV[3 * i + 2])
  local head = math.floor(now / width)
  local flat = redis.call('HGETALL', key)
  local counts = {}
  for j = 1, #flat, 2 do
    local b = tonumber(flat[j])
    counts[b] = tonumber(flat[j + 1])
    -- A replica whose clock is ahead moved the window on: never go back.
    if b > head then head = b end
  end
  local total = pending[key] or 0
  for b, c in pairs(counts) do
    if b > head - 17 then total = total + c end
  end
  heads[i] = head
  widths[i] = width
  if cost <= max - total then
    pending[key] = (pending[key] or 0) + cost
  else
    local remaining = total
    local wait = 17 * width
    for k = 1, 17 do
      remaining = remaining - (counts[head + k - 17] or 0)
      if cost <= max - remaining then
        wait = (head + k) * width - now
        break
      end
    end
    if wait > longest then
      refused, longest = i, wait
    end
  end
end
if refused > 0 then
  return {1, refused - 1, longest}
end
if mode == 'acquire' then
  for i = 1, #KEYS do
    local key, head = KEYS[i], heads[i]
    redis.call('HINCRBY', key, string.format('%d', head), ARGV[3 * i + 2])
    for _, field in ipairs(redis.call('HKEYS', key)) do
      if tonumber(field) <= head - 17 then redis.call('HDEL', key, field) end
    end
    -- The key expires once its newest bucket has left the window, plus a second.
    redis.call('PEXPIRE', key, math.ceil(((head + 17) * widths[i] - now) / 1000) + 1000)
  end
end
return {0, now}
";

/// Gives back units recorded in one bucket, never more than it holds.
pub(super) const RELEASE: &str = r"
local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local give = math.min(held, tonumber(ARGV[2]))
if give <= 0 then return 0 end
if give >= held then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HINCRBY', KEYS[1], ARGV[1], string.format('%d', -give))
end
return give
";
