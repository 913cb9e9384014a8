-- The message object's methods (KumoMTA's docs/reference/message/), except set_meta and
-- get_meta, which the sandbox keeps beside its meta log. The message itself (envelope,
-- header fields, data) lives in Python (message_state.py, namespaces/message.py); what the
-- handler changed there goes back to the caller when the handler returns.
local lib = ...
local Message, active, host_function = lib.Message, lib.active, lib.host_function
local encode_value, is_fatal, policy_location = lib.encode_value, lib.is_fatal, lib.policy_location
local error, type, pcall, tostring, next, rawlen = error, type, pcall, tostring, next, rawlen
local setmetatable = setmetatable
local string_match, string_gsub, string_byte = string.match, string.gsub, string.byte
local utf8_len, utf8_char = utf8.len, utf8.char

local message_id = host_function("message_id")
local message_sender = host_function("message_sender")
local message_recipient = host_function("message_recipient")
local set_sender = host_function("message_set_sender")
local set_recipient = host_function("message_set_recipient")
local first_header = host_function("message_first_header")
local all_headers_named = host_function("message_all_headers_named")
local all_headers = host_function("message_all_headers")
local add_header = host_function("message_add_header")
local remove_named = host_function("message_remove_named")
local remove_x = host_function("message_remove_x")
local x_headers = host_function("message_x_headers")
local get_data = host_function("message_get_data")
local set_data = host_function("message_set_data")
local address_header = host_function("message_address_header")
local queue_name = host_function("message_queue_name")
local check_fix_conformance = host_function("message_check_fix_conformance")
local scheduling = host_function("message_scheduling")
local scheduling_header = host_function("message_scheduling_header")
local import_headers = host_function("message_import_headers")
local append_text = host_function("message_append_text")

local function as_json(method, value)
  local ok, text = pcall(encode_value, value, 0)
  if not ok then
    if is_fatal(text) then
      error(text, 0)
    end
    error(policy_location(2) .. "msg:" .. method .. ": " .. tostring(text), 0)
  end
  return text
end

local function need_string(method, value, what)
  if type(value) ~= "string" or utf8_len(value) == nil then
    error(policy_location(2) .. "msg:" .. method .. ": " .. what .. " must be a UTF-8 string, got a "
      .. type(value), 0)
  end
end

---------------------------------------------------------------------------------------------
-- Envelope. KumoMTA's EnvelopeAddress: user, domain, email (the null sender: all empty).
---------------------------------------------------------------------------------------------
local AddressMeta = {
  __metatable = false,
  __name = "EnvelopeAddress",
  __tostring = function(a) return a.email end,
}

local function make_address(text)
  local user, domain = string_match(text, "^(.*)@([^@]*)$")
  if user == nil then
    user, domain = text, ""
  end
  return setmetatable({ user = user, domain = domain, email = text }, AddressMeta)
end
-- The SMTP-time events (sandbox.lua, engine.run_event) hand out the same addresses.
lib.make_address = make_address

-- An address argument: a string, or an EnvelopeAddress (anything with a string `email`).
local function address_text(method, value)
  if type(value) == "table" and type(value.email) == "string" then
    value = value.email
  end
  need_string(method, value, "the address")
  return value
end

function Message:id()
  active(self, "id")
  return message_id()
end

function Message:sender()
  active(self, "sender")
  return make_address(message_sender())
end

function Message:recipient()
  active(self, "recipient")
  return make_address(message_recipient())
end

-- relaystream messages have one recipient each (KumoMTA's list form of a batch).
function Message:recipient_list()
  active(self, "recipient_list")
  return { make_address(message_recipient()) }
end

function Message:set_sender(address)
  active(self, "set_sender")
  set_sender(address_text("set_sender", address))
end

function Message:set_recipient(address)
  active(self, "set_recipient")
  if type(address) == "table" and address.email == nil then
    if rawlen(address) ~= 1 then
      error(policy_location(2) .. "msg:set_recipient: a relaystream message has exactly one "
        .. "recipient; got a list of " .. rawlen(address), 0)
    end
    address = address[1]
  end
  set_recipient(address_text("set_recipient", address))
end

function Message:num_attempts()
  active(self, "num_attempts")
  return 0 -- the handlers that get a message run at reception, before any attempt
end

---------------------------------------------------------------------------------------------
-- Header fields.
---------------------------------------------------------------------------------------------
function Message:get_first_named_header_value(name)
  active(self, "get_first_named_header_value")
  need_string("get_first_named_header_value", name, "the name")
  return first_header(name)
end

function Message:get_all_named_header_values(name)
  active(self, "get_all_named_header_values")
  need_string("get_all_named_header_values", name, "the name")
  return all_headers_named(name)
end

function Message:get_all_headers()
  active(self, "get_all_headers")
  return all_headers()
end

function Message:append_header(name, value, encode)
  active(self, "append_header")
  need_string("append_header", name, "the name")
  need_string("append_header", value, "the value")
  add_header(name, value, encode == true, false)
end

function Message:prepend_header(name, value, encode)
  active(self, "prepend_header")
  need_string("prepend_header", name, "the name")
  need_string("prepend_header", value, "the value")
  add_header(name, value, encode == true, true)
end

function Message:remove_all_named_headers(name)
  active(self, "remove_all_named_headers")
  need_string("remove_all_named_headers", name, "the name")
  remove_named(name)
end

local function name_list(method, names)
  if names == nil then
    return nil
  end
  if type(names) ~= "table" then
    error(policy_location(2) .. "msg:" .. method .. ": expected a list of header names, got a "
      .. type(names), 0)
  end
  return as_json(method, names)
end

function Message:remove_x_headers(names)
  active(self, "remove_x_headers")
  remove_x(name_list("remove_x_headers", names))
end

function Message:import_x_headers(names)
  active(self, "import_x_headers")
  local imported = x_headers(name_list("import_x_headers", names))
  for i = 1, #imported do
    Message.set_meta(self, imported[i][1], imported[i][2])
  end
end

function Message:import_headers(specs)
  active(self, "import_headers")
  if type(specs) ~= "table" then
    error(policy_location(2) .. "msg:import_headers: expected a list of specs, got a "
      .. type(specs), 0)
  end
  local imported = import_headers(as_json("import_headers", specs))
  for i = 1, #imported do
    Message.set_meta(self, imported[i][1], imported[i][2])
  end
end

local AddressHeaderMeta = { __metatable = false, __name = "AddressHeader" }
local address_header_state = setmetatable({}, { __mode = "k" })

local function single(header, field)
  local list = address_header_state[header].list
  if #list ~= 1 then
    error(policy_location(3) .. "the address header is not a single simple address (it has "
      .. #list .. "); use .list", 0)
  end
  local entry = list[1]
  local address = entry.address
  if field == "name" then
    return entry.name
  elseif field == "email" then
    return address
  end
  local user, domain = string_match(address or "", "^(.*)@([^@]*)$")
  if field == "user" then
    return user
  end
  return domain
end

local function list_entry(entry)
  local user, domain = string_match(entry.address or "", "^(.*)@([^@]*)$")
  return setmetatable({ name = entry.name, email = entry.address, user = user, domain = domain },
    { __metatable = false, __name = "Address",
      __tostring = function() return as_json("address", { name = entry.name, address = entry.address }) end })
end

AddressHeaderMeta.__index = function(header, key)
  if key == "list" then
    local list = address_header_state[header].list
    local out = {}
    for i = 1, #list do
      out[i] = list_entry(list[i])
    end
    return out
  elseif key == "name" or key == "email" or key == "user" or key == "domain" then
    return single(header, key)
  end
  return nil
end
AddressHeaderMeta.__tostring = function(header)
  return address_header_state[header].json
end

local function get_address_header(name)
  local parsed = address_header(name)
  if parsed == nil then
    return nil
  end
  local header = setmetatable({}, AddressHeaderMeta)
  address_header_state[header] = parsed
  return header
end

function Message:get_address_header(name)
  active(self, "get_address_header")
  need_string("get_address_header", name, "the name")
  return get_address_header(name)
end

function Message:from_header()
  active(self, "from_header")
  return get_address_header("From")
end

function Message:to_header()
  active(self, "to_header")
  return get_address_header("To")
end

---------------------------------------------------------------------------------------------
-- Data.
---------------------------------------------------------------------------------------------
function Message:get_data()
  active(self, "get_data")
  return get_data()
end

local function latin1_char(c)
  return utf8_char(string_byte(c))
end

function Message:set_data(payload)
  active(self, "set_data")
  if type(payload) ~= "string" then
    error(policy_location(2) .. "msg:set_data: the payload must be a string, got a "
      .. type(payload), 0)
  end
  if utf8_len(payload) ~= nil then
    set_data(payload, false)
  else
    -- Only UTF-8 crosses to Python as text: bytes that are not go one code point each.
    set_data((string_gsub(payload, "[\128-\255]", latin1_char)), true)
  end
end

-- Returns whether the message had such a part (KumoMTA's boolean).
function Message:append_text_plain(content)
  active(self, "append_text_plain")
  need_string("append_text_plain", content, "the content")
  return append_text("plain", content)
end

function Message:append_text_html(content)
  active(self, "append_text_html")
  need_string("append_text_html", content, "the content")
  return append_text("html", content)
end

function Message:check_fix_conformance(checks, fixes, settings)
  active(self, "check_fix_conformance")
  return check_fix_conformance(checks, fixes,
    settings ~= nil and as_json("check_fix_conformance", settings) or nil)
end

---------------------------------------------------------------------------------------------
-- Queue and scheduling.
---------------------------------------------------------------------------------------------
function Message:queue_name()
  active(self, "queue_name")
  local meta = {}
  for _, key in next, { "queue", "tenant", "campaign", "routing_domain" } do
    meta[key] = Message.get_meta(self, key)
  end
  return queue_name(as_json("queue_name", meta))
end

function Message:set_scheduling(params)
  active(self, "set_scheduling")
  if params == nil then
    return nil -- clearing: there is nothing set to clear
  end
  scheduling(as_json("set_scheduling", params))
end

-- The header's JSON is read, checked and refused like set_scheduling's table; without the
-- header there is nothing to import.
function Message:import_scheduling_header(name, remove)
  active(self, "import_scheduling_header")
  need_string("import_scheduling_header", name, "the header name")
  return scheduling_header(name, remove == true)
end

---------------------------------------------------------------------------------------------
-- Accepted without effect: the spool is Kafka, written once the handler has returned.
---------------------------------------------------------------------------------------------
for _, name in next, { "save", "shrink", "shrink_data" } do
  Message[name] = function(self)
    active(self, name)
  end
end

-- KumoMTA methods relaystream does not offer: a clear error naming each, never a silent no-op.
local REFUSED = {
  add_authentication_results = "authentication results (and dkim_verify/arc_verify) are not built",
  arc_seal = "ARC is not built",
  arc_verify = "ARC is not built",
  dkim_verify = "DKIM verification at reception is not built",
  increment_num_attempts = "attempts are counted by the scheduler",
  parse_mime = "MIME parsing for policies is not built",
  parse_rfc3464 = "delivery status report parsing for policies is not built",
  set_due = "the scheduler does not take a due time from the policy",
  set_force_sync = "durability is the Kafka producer's, the same for every message",
}
for name, reason in next, REFUSED do
  Message[name] = function()
    error(policy_location(2) .. "msg:" .. name .. "() is not available in relaystream: "
      .. reason, 0)
  end
end
