-- Invalidates changed products in one atomic call (SPEC invariant 4).
--
-- KEYS: entry_1, fence_1, entry_2, fence_2, ...   (two keys per product)
-- ARGV: fence_ttl_secs, version_1, version_2, ...  (one version per product)
--
-- For each product: raise the fence (the lowest version that may still be cached) to
-- max(fence, version), never lower it, and delete the cached entry when it is older than
-- version. An entry is the string "<version>|<json>".
-- Returns {entries evicted, fences raised}.
local ttl = tonumber(ARGV[1])
local evicted, fenced = 0, 0
for i = 1, #KEYS / 2 do
  local entry_key, fence_key = KEYS[2 * i - 1], KEYS[2 * i]
  local version = tonumber(ARGV[i + 1])
  local fence = tonumber(redis.call('GET', fence_key))
  if fence == nil or fence < version then
    redis.call('SET', fence_key, ARGV[i + 1], 'EX', ttl)
    fenced = fenced + 1
  end
  local cached = redis.call('GET', entry_key)
  if cached then
    local cached_version = tonumber(string.match(cached, '^(%-?%d+)|'))
    if cached_version == nil or cached_version < version then
      redis.call('DEL', entry_key)
      evicted = evicted + 1
    end
  end
end
return {evicted, fenced}
