-- kumo.digest: sha1 ... sha3_512 and crc32 over every argument (a string as its bytes,
-- anything else as its JSON), and hmac_sha1 ... hmac_sha512 with a key source
-- ({ key_data = '...' } or a file name). Each returns a BinaryResult: its fields are the raw
-- `bytes` and their encodings (hex, base64, ...), tostring gives the hex (digest.py).
local lib = ...
local kumo, host_function, host_bytes = lib.kumo, lib.host_function, lib.host_bytes
local encode_value, policy_location, is_fatal = lib.encode_value, lib.policy_location, lib.is_fatal
local type, select, pcall, error, tostring, setmetatable = type, select, pcall, error, tostring, setmetatable
local next, table_unpack = next, table.unpack

local ResultMeta = {
  __name = "BinaryResult",
  __metatable = "BinaryResult",
  __tostring = function(result) return result.hex end,
}

local function as_bytes(name, value)
  if type(value) == "string" then
    return host_bytes(value)
  end
  local ok, text = pcall(encode_value, value, 0)
  if not ok then
    if is_fatal(text) then
      error(text, 0)
    end
    error(policy_location(3) .. "kumo.digest." .. name .. ": " .. tostring(text), 0)
  end
  return text, false
end

local digest = {}
for _, name in next, { "sha1", "sha224", "sha256", "sha384", "sha512", "sha512_256",
  "sha3_256", "sha3_384", "sha3_512", "crc32" } do
  local run = host_function("digest_" .. name)
  digest[name] = function(...)
    local parts = {}
    for i = 1, select("#", ...) do
      parts[2 * i - 1], parts[2 * i] = as_bytes(name, (select(i, ...)))
    end
    return setmetatable(run(table_unpack(parts, 1, 2 * select("#", ...))), ResultMeta)
  end
end

for _, hash in next, { "sha1", "sha224", "sha256", "sha384", "sha512" } do
  local name = "hmac_" .. hash
  local run = host_function("digest_" .. name)
  digest[name] = function(key, message)
    local kind, key_text, key_hex = nil, nil, false
    if type(key) == "string" then
      kind, key_text = "file", key
    elseif type(key) == "table" and type(key.key_data) == "string" then
      kind = "data"
      key_text, key_hex = host_bytes(key.key_data)
    else
      kind = "other"
    end
    local text, is_hex = as_bytes(name, message)
    return setmetatable(run(kind, key_text, key_hex, text, is_hex), ResultMeta)
  end
end

kumo.digest = digest
