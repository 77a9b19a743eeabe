//! The Lua scripts: one per operation, each run atomically on the master that owns the mailbox's
//! hash slot.
//!
//! Every script gets the same six keys, all in one hash slot (see [`super::keys`]):
//!
//! | | key | type | holds |
//! |---|---|---|---|
//! | `KEYS[1]` | `…:m` | hash | `c` credential hash, `n` next sequence number, `k` live messages, `b` live payload bytes |
//! | `KEYS[2]` | `…:d` | sorted set | live messages: member = record (item id ‖ stored_at u64 BE ‖ payload), score = seq |
//! | `KEYS[3]` | `…:i` | hash | item id → seq, for every message not yet expired (also those deleted): de-duplication |
//! | `KEYS[4]` | `…:t` | sorted set | member = item id ‖ seq (decimal), score = when to forget it − retention: `stored_at` for a live message, `stored_at − (retention − remember_deleted_ids)` once deleted |
//! | `KEYS[5]` | bucket `…:stats` | hash | `m` mailboxes, `k` messages, `b` payload bytes of the bucket |
//! | `KEYS[6]` | bucket `…:due` | sorted set | member = mailbox id (32 bytes), score = its oldest `stored_at` |
//!
//! A script that reports success but wrote nothing (a registration repeated, an append of
//! duplicates only, a fetch) still issues one harmless write (`HINCRBY …:m n 0`): the `WAIT 1`
//! that follows on the same connection then covers every earlier write to the mailbox, so that
//! what the script reported (a duplicate's original, a fetched message) is known to be on a
//! replica too.
//!
//! Numbers are Lua doubles: sequence numbers, counts and times are exact below 2^53, which the
//! store enforces for times and which counts and sequence numbers cannot reach.

/// Shared helpers, prepended to every script.
const PRELUDE: &str = r#"
local function add(key, field, v)
  if v ~= 0 then redis.call('HINCRBY', key, field, v) end
end
local function counts(dk, db)
  add(KEYS[1], 'k', dk); add(KEYS[1], 'b', db)
  add(KEYS[5], 'k', dk); add(KEYS[5], 'b', db)
end
local function due(mb)
  local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  if first[2] then redis.call('ZADD', KEYS[6], first[2], mb) else redis.call('ZREM', KEYS[6], mb) end
end
local function owner(hash)
  local c = redis.call('HGET', KEYS[1], 'c')
  return c and c == hash
end
local function touch()
  redis.call('HINCRBY', KEYS[1], 'n', 0)
end
local function forget_early(rec, seq, shift)
  if shift > 0 then
    local mem = string.sub(rec, 1, 32) .. tonumber(seq)
    local t = redis.call('ZSCORE', KEYS[4], mem)
    if t then redis.call('ZADD', KEYS[4], 'XX', tonumber(t) - shift, mem) end
  end
end
"#;

/// ARGV: credential hash, now. Returns 1 (registered, or already with this credential) or 0
/// (registered with another credential).
const REGISTER: &str = r#"
local c = redis.call('HGET', KEYS[1], 'c')
if c then
  if c ~= ARGV[1] then return 0 end
  touch()
  return 1
end
redis.call('HSET', KEYS[1], 'c', ARGV[1], 'n', 1, 'k', 0, 'b', 0)
redis.call('HINCRBY', KEYS[5], 'm', 1)
return 1
"#;

/// ARGV: credential hash, mailbox id. Returns 1, or 0 when unauthorized.
const UNREGISTER: &str = r#"
local meta = redis.call('HMGET', KEYS[1], 'c', 'k', 'b')
if not meta[1] or meta[1] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
add(KEYS[5], 'm', -1)
add(KEYS[5], 'k', -tonumber(meta[2]))
add(KEYS[5], 'b', -tonumber(meta[3]))
redis.call('ZREM', KEYS[6], ARGV[2])
return 1
"#;

/// ARGV: now, max messages, max bytes, mailbox id, then (item id, record) pairs in order.
/// Returns `{0}` for an unknown mailbox, else `{1, o1, o2, …}` with one outcome per pair:
/// seq > 0 stored, -seq duplicate, 0 over quota.
const APPEND: &str = r#"
local meta = redis.call('HMGET', KEYS[1], 'n', 'k', 'b')
if not meta[1] then return {0} end
local n, k, b = tonumber(meta[1]), tonumber(meta[2]), tonumber(meta[3])
local maxk, maxb = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {1}
local added, addedb, dup = 0, 0, false
for j = 5, #ARGV - 1, 2 do
  local id, rec = ARGV[j], ARGV[j + 1]
  local s = redis.call('HGET', KEYS[3], id)
  if s then
    out[#out + 1] = -tonumber(s)
    dup = true
  else
    local len = #rec - 40
    if k >= maxk or b + len > maxb then
      out[#out + 1] = 0
    else
      redis.call('ZADD', KEYS[2], n, rec)
      redis.call('HSET', KEYS[3], id, n)
      redis.call('ZADD', KEYS[4], ARGV[1], id .. n)
      out[#out + 1] = n
      n = n + 1; k = k + 1; b = b + len
      added = added + 1; addedb = addedb + len
    end
  end
end
if added > 0 then
  redis.call('HINCRBY', KEYS[1], 'n', added)
  counts(added, addedb)
  due(ARGV[4])
elseif dup then
  touch()
end
return out
"#;

/// ARGV: credential hash, after (exclusive), limit. Returns `{0}` when unauthorized, else
/// `{1, {record, seq, record, seq, …}}`.
const FETCH: &str = r#"
if not owner(ARGV[1]) then return {0} end
touch()
return {1, redis.call('ZRANGE', KEYS[2], '(' .. ARGV[2], '+inf', 'BYSCORE', 'LIMIT', 0, ARGV[3], 'WITHSCORES')}
"#;

/// ARGV: credential hash, up_to (inclusive), shift (retention − remember_deleted_ids, seconds),
/// mailbox id. Returns `{0}` when unauthorized, else `{1, n}`. A deleted message's expiry entry is
/// moved `shift` earlier, so that `EXPIRE` forgets its id at `stored_at + remember_deleted_ids`.
const DELETE_UP_TO: &str = r#"
if not owner(ARGV[1]) then return {0} end
local r = redis.call('ZRANGE', KEYS[2], '-inf', ARGV[2], 'BYSCORE', 'WITHSCORES')
local shift = tonumber(ARGV[3])
local cnt, bytes = 0, 0
for j = 1, #r, 2 do
  cnt = cnt + 1
  bytes = bytes + #r[j] - 40
  forget_early(r[j], r[j + 1], shift)
end
if cnt > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
  counts(-cnt, -bytes)
  due(ARGV[4])
else
  touch()
end
return {1, cnt}
"#;

/// ARGV: credential hash, shift (as for `DELETE_UP_TO`), mailbox id, then sequence numbers.
/// Returns `{0}` when unauthorized, else `{1, n}`.
const DELETE: &str = r#"
if not owner(ARGV[1]) then return {0} end
local shift = tonumber(ARGV[2])
local cnt, bytes = 0, 0
for j = 4, #ARGV do
  local r = redis.call('ZRANGE', KEYS[2], ARGV[j], ARGV[j], 'BYSCORE')
  if r[1] then
    redis.call('ZREM', KEYS[2], r[1])
    cnt = cnt + 1
    bytes = bytes + #r[1] - 40
    forget_early(r[1], ARGV[j], shift)
  end
end
if cnt > 0 then counts(-cnt, -bytes); due(ARGV[3]) else touch() end
return {1, cnt}
"#;

/// ARGV: cutoff (inclusive; `now − retention`, may be negative), mailbox id. Forgets every message
/// whose expiry entry is at or before the cutoff; returns how many of them were live.
const EXPIRE: &str = r#"
local old = redis.call('ZRANGE', KEYS[4], '-inf', ARGV[1], 'BYSCORE')
local live, bytes = 0, 0
for _, mem in ipairs(old) do
  redis.call('HDEL', KEYS[3], string.sub(mem, 1, 32))
  local seq = string.sub(mem, 33)
  local r = redis.call('ZRANGE', KEYS[2], seq, seq, 'BYSCORE')
  if r[1] then
    redis.call('ZREM', KEYS[2], r[1])
    live = live + 1
    bytes = bytes + #r[1] - 40
  end
end
if #old > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[1])
  if redis.call('EXISTS', KEYS[1]) == 1 then counts(-live, -bytes) end
end
due(ARGV[2])
return live
"#;

/// One script: its source, and the SHA-1 that `EVALSHA` names it by.
pub(super) struct Lua {
    pub(super) body: String,
    pub(super) sha: String,
}

impl Lua {
    fn new(body: &str) -> Self {
        let body = format!("{PRELUDE}{body}");
        let sha = redis::Script::new(&body).get_hash().to_owned();
        Lua { body, sha }
    }
}

/// The scripts, hashed once per store.
pub(super) struct Scripts {
    pub(super) register: Lua,
    pub(super) unregister: Lua,
    pub(super) append: Lua,
    pub(super) fetch: Lua,
    pub(super) delete_up_to: Lua,
    pub(super) delete: Lua,
    pub(super) expire: Lua,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            register: Lua::new(REGISTER),
            unregister: Lua::new(UNREGISTER),
            append: Lua::new(APPEND),
            fetch: Lua::new(FETCH),
            delete_up_to: Lua::new(DELETE_UP_TO),
            delete: Lua::new(DELETE),
            expire: Lua::new(EXPIRE),
        }
    }
}
