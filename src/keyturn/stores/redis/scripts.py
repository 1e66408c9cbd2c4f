"""The Lua scripts of the Redis store and its lock (:mod:`keyturn.stores.redis`); each runs
atomically inside Redis.

Redis runs Lua 5.1, whose numbers are doubles: integers are exact below 2**53, which fences (the
server's clock in microseconds, then +1 per lock) stay under until the year 2255.
"""

__all__ = ["ACQUIRE", "RELEASE", "RENEW", "WRITE"]

# KEYS: lock, hash. ARGV: owner, lease ms, minimum hash TTL ms. Returns the fence, or false.
ACQUIRE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local fence
if redis.call('HEXISTS', KEYS[2], 'issued') == 1 then
  fence = redis.call('HINCRBY', KEYS[2], 'issued', 1)
else
  -- A new counter starts at the server's clock in microseconds (exact in Lua's doubles until the
  -- year 2255): the fences of an earlier, expired hash are all smaller, so a writer holding one
  -- can never pass the check in WRITE.
  local now = redis.call('TIME')
  fence = tonumber(now[1]) * 1000000 + tonumber(now[2])
  redis.call('HSET', KEYS[2], 'issued', string.format('%d', fence), 'fence', string.format('%d', fence))
end
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return fence
"""

# KEYS: lock, hash. ARGV: owner, lease ms, minimum hash TTL ms. Returns 1 if still the owner.
RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return 1
"""

# KEYS: lock, release signal. ARGV: owner, signal TTL ms. Deletes the lock only if it is still
# ours, then wakes one waiter (blocked in BLPOP on the signal list) to take it next.
RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('LPUSH', KEYS[2], '1')
redis.call('LTRIM', KEYS[2], 0, 0)
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""

# KEYS: hash. ARGV: record JSON ('' deletes the record), cache key, fence ('' = not under a lock),
# TTL ms. Returns 1 when written, 0 when a newer writer got there first.
WRITE = """
if ARGV[1] == '' and redis.call('EXISTS', KEYS[1]) == 0 then return 1 end
local issued = redis.call('HGET', KEYS[1], 'issued')
local stored = redis.call('HGET', KEYS[1], 'fence')
local fence = ARGV[3]
if fence ~= '' then
  local f = tonumber(fence)
  if f < tonumber(stored or '0') or f > tonumber(issued or '0') then return 0 end
else
  fence = issued or stored or '0'
end
if ARGV[1] == '' and not issued then
  redis.call('DEL', KEYS[1])
  return 1
elseif ARGV[1] == '' then
  -- Keep the fence counter: a writer from before the delete must still be refused.
  redis.call('HDEL', KEYS[1], 'record', 'key')
  redis.call('HSET', KEYS[1], 'fence', fence)
else
  redis.call('HSET', KEYS[1], 'record', ARGV[1], 'key', ARGV[2], 'fence', fence)
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""
