-- kumo.regex (regex.py): compile(PATTERN) gives a Regex with captures, is_match, find,
-- find_all, replace, replace_all, replacen and split; escape(TEXT). RE2 matches in linear
-- time, so no pattern backtracks past the running call's deadline.
local lib = ...
local kumo, host_function = lib.kumo, lib.host_function
local setmetatable, next = setmetatable, next

local check = host_function("regex_compile")
local replacen = host_function("regex_replacen")
local pattern_of = setmetatable({}, { __mode = "k" })

local Regex = {}
local RegexMeta = {
  __name = "Regex",
  __metatable = "Regex",
  __index = Regex,
  __tostring = function(re) return pattern_of[re] end,
}

for _, name in next, { "captures", "is_match", "find", "find_all", "split" } do
  local run = host_function("regex_" .. name)
  Regex[name] = function(self, text)
    return run(pattern_of[self], text)
  end
end

function Regex:replace(text, replacement)
  return replacen(pattern_of[self], text, 1, replacement)
end

function Regex:replace_all(text, replacement)
  return replacen(pattern_of[self], text, 0, replacement)
end

function Regex:replacen(text, limit, replacement)
  return replacen(pattern_of[self], text, limit, replacement)
end

local regex = { escape = host_function("regex_escape") }

function regex.compile(pattern)
  local re = setmetatable({}, RegexMeta)
  pattern_of[re] = check(pattern)
  return re
end

kumo.regex = regex
