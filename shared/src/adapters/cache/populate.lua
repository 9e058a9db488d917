-- Caches one product's state read from the database, unless it is already stale.
--
-- KEYS: entry, fence
-- ARGV: version, json, ttl_secs
--
-- Stores "<version>|<json>" with the TTL only when version >= fence (no invalidation for a
-- newer version has run) and version > the cached entry's version. Atomic, so an
-- invalidation can never run between the check and the write.
-- Returns {1, version} when stored, {0, fence} when fenced, {2, cached version} when the
-- cache already holds this version or a newer one.
local version = tonumber(ARGV[1])
local fence = tonumber(redis.call('GET', KEYS[2]))
if fence ~= nil and version < fence then
  return {0, fence}
end
local cached = redis.call('GET', KEYS[1])
if cached then
  local cached_version = tonumber(string.match(cached, '^(%-?%d+)|'))
  if cached_version ~= nil and cached_version >= version then
    return {2, cached_version}
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', tonumber(ARGV[3]))
return {1, version}
