-- kumo.encode: base32, base32hex, base64, base64url (each also _nopad) and hex, both ways,
-- and charset_encode/charset_decode (encode.py). Binary strings cross to Python as hex.
local lib = ...
local kumo, host_function = lib.kumo, lib.host_function
local utf8_len, string_gsub, string_format, string_byte = utf8.len, string.gsub, string.format, string.byte
local type, next = type, next

local function hex_byte(char)
  return string_format("%02x", string_byte(char))
end

-- A string for a Python callback: as is when it is UTF-8, else as hex, with `true` saying so.
function lib.host_bytes(value)
  if type(value) == "string" and utf8_len(value) == nil then
    return (string_gsub(value, ".", hex_byte)), true
  end
  return value, false
end
local host_bytes = lib.host_bytes

local encode = {}
for _, name in next, { "base32", "base32_nopad", "base32hex", "base32hex_nopad", "base64",
  "base64_nopad", "base64url", "base64url_nopad", "hex" } do
  local to_text = host_function("encode_" .. name .. "_encode")
  encode[name .. "_encode"] = function(data) return to_text(host_bytes(data)) end
  encode[name .. "_decode"] = host_function("encode_" .. name .. "_decode")
end

local charset_decode = host_function("encode_charset_decode")
function encode.charset_decode(charset, data)
  return charset_decode(charset, host_bytes(data))
end
encode.charset_encode = host_function("encode_charset_encode")

kumo.encode = encode
