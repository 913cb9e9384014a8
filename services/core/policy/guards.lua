-- Guarded versions of the standard functions whose C code can run unboundedly long.
--
-- Lua's hooks fire only on VM instructions: a C function runs to completion whatever it
-- costs, so the sandbox's instruction budget and deadline see one call as one instruction.
-- Which reachable C functions can run long (checked against Lua 5.4's lstrlib.c, ltablib.c,
-- lutf8lib.c, lmathlib.c, lbaselib.c and lcorolib.c, with the Lua state's memory limit):
--
--  * string.find/match/gmatch/gsub with patterns: backtracking over `*` `+` `-` `?` items
--    is polynomial of the degree of their count (`.-.-.-b` is n^4), and plain searches are
--    O(n*m). Guarded below: each call's worst case is bounded from the pattern and the
--    subject; a call whose bound is worth more than about C_WORK_LIMIT of C time runs in
--    the Lua implementation of Lua 5.4's matcher below, on the VM, where hooks fire.
--  * string.rep("", n) with an empty separator loops n times (up to 2^63) copying nothing.
--  * table.move(a, f, e, t) loops e - f times even over nils, which take no memory.
--  * table.sort without a comparator compares in C: n log n string comparisons, each as long
--    as the strings (a table of n references to one 30 MB string sorts for hours).
-- Everything else is linear in its arguments or its result, and so bounded by the memory
-- limit: string.byte/char/format/len/lower/upper/reverse/sub/pack/unpack/packsize, table
-- concat/insert/remove/pack/unpack (unpack is capped by the stack limit), utf8.*, math.*,
-- coroutine.*, next/pairs/ipairs/select/tonumber/tostring/raw*. Metamethods they call
-- (__index, __lt, __tostring, ...) are Lua functions and run under the hook.
--
-- This chunk runs once per Lua state, before the sandbox hides anything. `charge(work)`
-- accounts C work the guards let through (in units of about a nanosecond) so the sandbox can
-- look at its clock between calls too, not only every N VM instructions. The Lua matcher
-- stands in for C work, so its instructions do not count against the instruction budget:
-- `set_matching(flag)` says when it runs (and returns the previous flag), `c_allowance()` what
-- C work the call's deadline still allows, and the deadline
-- alone bounds it. The same policy on the same input then fails or not whichever
-- implementation ran.
local charge, set_matching, c_allowance = ...

local byte, sub, char = string.byte, string.sub, string.char
local string_find, string_match, string_gmatch, string_gsub = string.find, string.match, string.gmatch, string.gsub
local string_format, string_rep = string.format, string.rep
local table_concat, table_unpack, table_move, table_sort = table.concat, table.unpack, table.move, table.sort
local math_tointeger, math_type, math_max, math_min, math_maxinteger = math.tointeger, math.type, math.max, math.min, math.maxinteger
local type, tostring, tonumber, error, pcall = type, tostring, tonumber, error, pcall
local table_pack = table.pack

-- The bounds below are in units of at most about a nanosecond of C time. Measured on a 2-core
-- VM (C time over bound, worst shapes): %b 0.21 ns/unit, plain search 0.16, backtracking
-- (`.-.-b`, `^(.-):(.-):(.-);$`, `a*a*a*a*b`, `[^b]-b`) 0.0001 to 0.005: the bound is an
-- upper bound with room. C_WORK_LIMIT: 10 ms of C work between two looks at the clock.
local C_WORK_LIMIT = 10e6
local PATTERN_NS_PER_UNIT = 1.0
local PLAIN_NS_PER_BYTE = 0.1

local MAXCCALLS = 200 -- lstrlib.c's limit on match() recursion ("pattern too complex")
local MAXCAPTURES = 32 -- LUA_MAXCAPTURES
local CAP_UNFINISHED, CAP_POSITION = -1, -2

local L_ESC, LBRACKET, RBRACKET, CARET = byte("%"), byte("["), byte("]"), byte("^")
local LPAREN, RPAREN, DOLLAR, DOT, DASH = byte("("), byte(")"), byte("$"), byte("."), byte("-")
local STAR, PLUS, QUESTION = byte("*"), byte("+"), byte("?")
local ZERO, ONE, NINE, LOWER_B, LOWER_F = byte("0"), byte("1"), byte("9"), byte("b"), byte("f")
local SPECIALS = "[%^%$%*%+%?%.%(%[%%%-]" -- lstrlib.c's SPECIALS, as a set

-- Character classes as the C library answers them in this process's locale (and with this
-- build's options, e.g. %z): asked of the C matcher itself, so the two cannot disagree.
local CLASS = {}
for letter in string_gmatch("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", ".") do
  local members, pattern = {}, "^%" .. letter
  local is_class = letter ~= "b" and letter ~= "f" -- %b and %f are items, never classes
  for c = 0, 255 do
    members[c] = is_class and string_find(char(c), pattern) ~= nil
  end
  CLASS[byte(letter)] = is_class and members or nil
end

---------------------------------------------------------------------------------------------
-- Lua 5.4's pattern matcher (lstrlib.c), on 1-based indices: a state `ms` holds the subject
-- `src` (positions 1..src_end-1), the pattern `pat` (items up to p_end-1) and the captures.
-- Reading past either end gives nil where C reads the terminating '\0'.
---------------------------------------------------------------------------------------------
local match

local function match_class(c, cl)
  local members = CLASS[cl]
  if members == nil then
    return cl == c
  end
  return members[c]
end

local function class_end(ms, p)
  local pat, p_end = ms.pat, ms.p_end
  local c = byte(pat, p)
  p = p + 1
  if c == L_ESC then
    if p >= p_end then
      error("malformed pattern (ends with '%')", 1)
    end
    return p + 1
  elseif c == LBRACKET then
    if byte(pat, p) == CARET then
      p = p + 1
    end
    repeat
      if p >= p_end then
        error("malformed pattern (missing ']')", 1)
      end
      local cc = byte(pat, p)
      p = p + 1
      if cc == L_ESC and p < p_end then
        p = p + 1
      end
    until byte(pat, p) == RBRACKET
    return p + 1
  end
  return p
end

-- `p` is the '[' of the set, `ec` its closing ']'.
local function match_bracket_class(pat, c, p, ec)
  local sig = true
  if byte(pat, p + 1) == CARET then
    sig = false
    p = p + 1
  end
  p = p + 1
  while p < ec do
    local pc = byte(pat, p)
    if pc == L_ESC then
      p = p + 1
      if match_class(c, byte(pat, p)) then
        return sig
      end
    elseif byte(pat, p + 1) == DASH and p + 2 < ec then
      p = p + 2
      if pc <= c and c <= byte(pat, p) then
        return sig
      end
    elseif pc == c then
      return sig
    end
    p = p + 1
  end
  return not sig
end

local function single_match(ms, s, p, ep)
  if s >= ms.src_end then
    return false
  end
  local c = byte(ms.src, s)
  local pc = byte(ms.pat, p)
  if pc == DOT then
    return true
  elseif pc == L_ESC then
    return match_class(c, byte(ms.pat, p + 1))
  elseif pc == LBRACKET then
    return match_bracket_class(ms.pat, c, p, ep - 1)
  end
  return pc == c
end

local function match_balance(ms, s, p)
  if p >= ms.p_end - 1 then
    error("malformed pattern (missing arguments to '%b')", 1)
  end
  local src, pat = ms.src, ms.pat
  local open = byte(pat, p)
  if byte(src, s) ~= open then
    return nil
  end
  local close, depth, src_end = byte(pat, p + 1), 1, ms.src_end
  s = s + 1
  while s < src_end do
    local c = byte(src, s)
    if c == close then
      depth = depth - 1
      if depth == 0 then
        return s + 1
      end
    elseif c == open then
      depth = depth + 1
    end
    s = s + 1
  end
  return nil
end

local function max_expand(ms, s, p, ep)
  local i = 0
  while single_match(ms, s + i, p, ep) do
    i = i + 1
  end
  while i >= 0 do
    local res = match(ms, s + i, ep + 1)
    if res ~= nil then
      return res
    end
    i = i - 1
  end
  return nil
end

local function min_expand(ms, s, p, ep)
  while true do
    local res = match(ms, s, ep + 1)
    if res ~= nil then
      return res
    elseif single_match(ms, s, p, ep) then
      s = s + 1
    else
      return nil
    end
  end
end

local function start_capture(ms, s, p, what)
  local level = ms.level
  if level >= MAXCAPTURES then
    error("too many captures", 1)
  end
  ms.capture_init[level + 1] = s
  ms.capture_len[level + 1] = what
  ms.level = level + 1
  local res = match(ms, s, p)
  if res == nil then
    ms.level = ms.level - 1
  end
  return res
end

local function end_capture(ms, s, p)
  local l = ms.level
  while l >= 1 and ms.capture_len[l] ~= CAP_UNFINISHED do
    l = l - 1
  end
  if l < 1 then
    error("invalid pattern capture", 1)
  end
  ms.capture_len[l] = s - ms.capture_init[l]
  local res = match(ms, s, p)
  if res == nil then
    ms.capture_len[l] = CAP_UNFINISHED
  end
  return res
end

local function match_capture(ms, s, digit)
  local l = digit - ONE
  if l < 0 or l >= ms.level or ms.capture_len[l + 1] == CAP_UNFINISHED then
    error(string_format("invalid capture index %%%d", l + 1), 1)
  end
  local len = ms.capture_len[l + 1]
  if len == CAP_POSITION or ms.src_end - s < len then
    return nil -- C compares as size_t: a position capture never matches
  end
  local init = ms.capture_init[l + 1]
  if sub(ms.src, init, init + len - 1) == sub(ms.src, s, s + len - 1) then
    return s + len
  end
  return nil
end

match = function(ms, s, p)
  local depth = ms.depth
  if depth == 0 then
    error("pattern too complex", 1)
  end
  ms.depth = depth - 1
  local pat, p_end = ms.pat, ms.p_end
  while p ~= p_end do
    local pc = byte(pat, p)
    local next_pc = byte(pat, p + 1)
    if pc == LPAREN then
      if next_pc == RPAREN then
        s = start_capture(ms, s, p + 2, CAP_POSITION)
      else
        s = start_capture(ms, s, p + 1, CAP_UNFINISHED)
      end
      break
    elseif pc == RPAREN then
      s = end_capture(ms, s, p + 1)
      break
    elseif pc == DOLLAR and p + 1 == p_end then
      if s ~= ms.src_end then
        s = nil
      end
      break
    elseif pc == L_ESC and next_pc == LOWER_B then
      s = match_balance(ms, s, p + 2)
      if s == nil then
        break
      end
      p = p + 4
    elseif pc == L_ESC and next_pc == LOWER_F then
      p = p + 2
      if byte(pat, p) ~= LBRACKET then
        error("missing '[' after '%f' in pattern", 1)
      end
      local ep = class_end(ms, p)
      local previous = s == 1 and 0 or byte(ms.src, s - 1)
      local current = byte(ms.src, s) or 0
      if match_bracket_class(pat, previous, p, ep - 1) or not match_bracket_class(pat, current, p, ep - 1) then
        s = nil
        break
      end
      p = ep
    elseif pc == L_ESC and next_pc ~= nil and next_pc >= ZERO and next_pc <= NINE then
      s = match_capture(ms, s, next_pc)
      if s == nil then
        break
      end
      p = p + 2
    else
      local ep = class_end(ms, p)
      local suffix = byte(pat, ep)
      if not single_match(ms, s, p, ep) then
        if suffix == STAR or suffix == QUESTION or suffix == DASH then
          p = ep + 1
        else
          s = nil
          break
        end
      elseif suffix == QUESTION then
        local res = match(ms, s + 1, ep + 1)
        if res ~= nil then
          s = res
          break
        end
        p = ep + 1
      elseif suffix == PLUS then
        s = max_expand(ms, s + 1, p, ep)
        break
      elseif suffix == STAR then
        s = max_expand(ms, s, p, ep)
        break
      elseif suffix == DASH then
        s = min_expand(ms, s, p, ep)
        break
      else
        s = s + 1
        p = ep
      end
    end
  end
  ms.depth = ms.depth + 1
  return s
end

local function new_state(src, pat)
  return {
    src = src, src_end = #src + 1, pat = pat, p_end = #pat + 1,
    level = 0, depth = MAXCCALLS, capture_init = {}, capture_len = {},
  }
end

local function reprepare(ms)
  ms.level = 0
  ms.depth = MAXCCALLS
end

-- Capture i (0-based) of the last match s..e-1: a string, or a position (an integer).
local function get_capture(ms, i, s, e)
  if i >= ms.level then
    if i ~= 0 then
      error(string_format("invalid capture index %%%d", i + 1), 1)
    end
    return sub(ms.src, s, e - 1)
  end
  local len = ms.capture_len[i + 1]
  local init = ms.capture_init[i + 1]
  if len == CAP_UNFINISHED then
    error("unfinished capture", 1)
  elseif len == CAP_POSITION then
    return init
  end
  return sub(ms.src, init, init + len - 1)
end

-- All captures (or the whole match when there are none and `s` is given), in a table.
local function captures(ms, s, e)
  local count = (ms.level == 0 and s ~= nil) and 1 or ms.level
  local values = {}
  for i = 1, count do
    values[i] = get_capture(ms, i - 1, s, e)
  end
  return values, count
end

-- lstrlib.c's posrelatI: a start position clipped to 1 (the result is 1-based).
local function start_position(pos, len)
  if pos > 0 then
    return pos
  elseif pos == 0 or pos < -len then
    return 1
  end
  return len + pos + 1
end

local PLAIN_WINDOW = 4 * 1024 * 1024

-- A plain search from 1-based `init`, in windows of about PLAIN_WINDOW bytes of comparison
-- each, so that a quadratic search (`aaa...ab` in `aaaa...`) looks at the clock in between.
local function plain_find(s, p, init)
  local n, m = #s, #p
  if m == 0 then
    return init, init - 1
  end
  local starts = math_max(1, PLAIN_WINDOW // m)
  local first = init
  while first + m - 1 <= n do
    local last = math_min(first + starts - 1, n - m + 1)
    local found = string_find(sub(s, first, last + m - 1), p, 1, true)
    charge((last - first + 1) * m * PLAIN_NS_PER_BYTE + m)
    if found ~= nil then
      return first + found - 1, first + found + m - 2
    end
    first = last + 1
  end
  return nil
end

local function find_aux(s, p, init, plain, find)
  local ls = #s
  init = start_position(init, ls)
  if init > ls + 1 then
    return nil
  end
  if find and (plain or string_find(p, SPECIALS) == nil) then
    return plain_find(s, p, init)
  end
  local anchor = byte(p, 1) == CARET
  local first = anchor and 2 or 1
  local ms = new_state(s, p)
  local s1 = init
  while true do
    reprepare(ms)
    local e = match(ms, s1, first)
    if e ~= nil then
      if find then
        local values, count = captures(ms, nil, nil)
        return s1, e - 1, table_unpack(values, 1, count)
      end
      local values, count = captures(ms, s1, e)
      return table_unpack(values, 1, count)
    end
    if anchor or s1 >= ms.src_end then
      return nil
    end
    s1 = s1 + 1
  end
end

local lua_impl = {}

local raw = {}

function raw.find(s, p, init, plain)
  return find_aux(s, p, init or 1, plain, true)
end

function raw.match(s, p, init)
  return find_aux(s, p, init or 1, false, false)
end

function raw.gmatch(s, p, init)
  local ls = #s
  local src = start_position(init or 1, ls)
  if src > ls + 1 then
    src = ls + 2
  end
  local ms = new_state(s, p)
  local last_match = nil
  return function()
    local at = src
    while at <= ms.src_end do
      reprepare(ms)
      local e = match(ms, at, 1)
      if e ~= nil and e ~= last_match then
        src, last_match = e, e
        local values, count = captures(ms, at, e)
        return table_unpack(values, 1, count)
      end
      at = at + 1
    end
  end
end

-- The replacement string `repl` for the match s..e-1, into parts.
local function add_string(ms, parts, count, s, e, repl)
  local from = 1
  while true do
    local escape = string_find(repl, "%", from, true)
    if escape == nil then
      break
    end
    count = count + 1
    parts[count] = sub(repl, from, escape - 1)
    local c = byte(repl, escape + 1)
    count = count + 1
    if c == L_ESC then
      parts[count] = "%"
    elseif c == ZERO then
      parts[count] = sub(ms.src, s, e - 1)
    elseif c ~= nil and c >= ONE and c <= NINE then
      parts[count] = tostring(get_capture(ms, c - ONE, s, e))
    else
      error("invalid use of '%' in replacement string", 1)
    end
    from = escape + 2
  end
  count = count + 1
  parts[count] = sub(repl, from)
  return count
end

function raw.gsub(src, p, repl, max_n)
  local srcl = #src
  max_n = max_n or srcl + 1
  local anchor = byte(p, 1) == CARET
  local first = anchor and 2 or 1
  local ms = new_state(src, p)
  if type(repl) == "number" then
    repl = tostring(repl) -- as lua_tolstring does
  end
  local repl_type = type(repl)
  local parts, count = {}, 0
  local s, copied_to, last_match, n = 1, 1, nil, 0
  while n < max_n do
    reprepare(ms)
    local e = match(ms, s, first)
    if e ~= nil and e ~= last_match then
      n = n + 1
      count = count + 1
      parts[count] = sub(src, copied_to, s - 1)
      if repl_type == "string" then
        count = add_string(ms, parts, count, s, e, repl)
      else
        local value
        -- The replacement function (or an __index) is policy code: under the budget again.
        local was_matching = set_matching(false)
        if repl_type == "function" then
          local values, nvalues = captures(ms, s, e)
          value = repl(table_unpack(values, 1, nvalues))
        else
          value = repl[get_capture(ms, 0, s, e)]
        end
        set_matching(was_matching)
        count = count + 1
        if not value then
          parts[count] = sub(src, s, e - 1)
        elseif type(value) == "string" or type(value) == "number" then
          parts[count] = tostring(value)
        else
          error("invalid replacement value (a " .. type(value) .. ")", 1)
        end
      end
      s, copied_to, last_match = e, e, e
    elseif s < ms.src_end then
      s = s + 1
    else
      break
    end
    if anchor then
      break
    end
  end
  count = count + 1
  parts[count] = sub(src, copied_to)
  return table_concat(parts, "", 1, count), n
end

---------------------------------------------------------------------------------------------
-- The worst case of one C call, in units of about a nanosecond.
---------------------------------------------------------------------------------------------

-- Of a pattern: how many items can match variable lengths (`*` `+` `-` `?`, each a branch
-- point of backtracking), how many scan in a line (%b, back-references), the widest set.
-- nil for a malformed pattern (the Lua matcher raises the same error C would, when C would).
local shape_cache, shape_count = {}, 0

local function pattern_shape(p)
  local shape = shape_cache[p]
  if shape ~= nil then
    return shape
  end
  local m = #p
  local variable, linear, widest = 0, 0, 1
  local i = byte(p, 1) == CARET and 2 or 1
  while i <= m do
    local c, c2 = byte(p, i), byte(p, i + 1)
    if c == LPAREN or c == RPAREN then
      i = i + 1
    elseif c == L_ESC and c2 == LOWER_B then
      linear = linear + 1
      i = i + 4
    elseif c == L_ESC and c2 ~= nil and c2 >= ZERO and c2 <= NINE then
      linear = linear + 1
      i = i + 2
    else
      local is_frontier = c == L_ESC and c2 == LOWER_F
      if is_frontier then
        i = i + 2
      end
      local ok, ep = pcall(class_end, { pat = p, p_end = m + 1 }, i)
      if not ok then
        return false
      end
      widest = math_max(widest, ep - i)
      local suffix = byte(p, ep)
      if not is_frontier and (suffix == STAR or suffix == PLUS or suffix == DASH or suffix == QUESTION) then
        variable = variable + 1
        ep = ep + 1
      end
      i = ep
    end
  end
  shape = { m, variable, linear, widest }
  if shape_count >= 256 then
    shape_cache, shape_count = {}, 0
  end
  shape_cache[p] = shape
  shape_count = shape_count + 1
  return shape
end

-- Each match attempt follows at most C(n + k, k) paths (the k variable items split at most n
-- characters between them), each path costing its items, its scans and its set tests.
local function pattern_work(n, p, starts_everywhere)
  local shape = pattern_shape(p)
  if not shape then
    return math.huge
  end
  local m, variable, linear, widest = shape[1], shape[2], shape[3], shape[4]
  local paths = 1.0
  for i = 1, variable do
    paths = paths * (n + i) / i
  end
  local per_path = (m + (variable + linear) * (n + 1)) * widest
  local starts = starts_everywhere and (n + 1) or 1
  return starts * paths * per_path * PATTERN_NS_PER_UNIT
end

local function plain_work(n, m)
  if m > n then
    return m
  end
  return (n - m + 1) * m * PLAIN_NS_PER_BYTE + n
end

---------------------------------------------------------------------------------------------
-- The guarded functions. Arguments are converted as the C functions convert them; when one
-- cannot be, the C function is called with it and raises its usual argument error before
-- matching anything.
---------------------------------------------------------------------------------------------
-- An error raised in this chunk (by the matcher, or by a C function called from here) gets
-- the position C would give it: the line that called the string function, not ours.
local GUARDS_POSITION = "^relaystream%-guards:%d+: "

local function raise_as_caller(err)
  if type(err) == "string" then
    local position = string_match(err, GUARDS_POSITION)
    if position ~= nil then
      error(sub(err, #position + 1), 3)
    end
  end
  error(err, 0)
end

local function results(ok, ...)
  if ok then
    return ...
  end
  raise_as_caller((...))
end

-- Calls a C function from here (wrappers tail-call this, so level 3 is their caller).
local function call_c(fn, ...)
  return results(pcall(fn, ...))
end

-- Runs the Lua matcher outside the instruction budget (an error restores the flag too).
local function run_matcher(fn, ...)
  local was_matching = set_matching(true)
  local packed = table_pack(pcall(fn, ...))
  set_matching(was_matching)
  if not packed[1] then
    raise_as_caller(packed[2])
  end
  return table_unpack(packed, 2, packed.n)
end

local function as_string(v)
  local t = type(v)
  if t == "string" then
    return v
  elseif t == "number" then
    return tostring(v)
  end
  return nil
end

local function as_integer(v, default)
  if v == nil then
    return default
  end
  if type(v) == "string" then
    v = tonumber(v)
  end
  if type(v) ~= "number" then
    return nil
  end
  return math_tointeger(v)
end

-- C when the call's worst case is small, or fits in what is left of the call's deadline (the
-- clock is read only then): the deadline holds either way, as the bound is an upper bound.
local function fits_in_c(work)
  return work <= C_WORK_LIMIT or work <= c_allowance()
end

local function is_anchored(p)
  return byte(p, 1) == CARET
end

local guarded = {}

function guarded.find(s, p, init, plain)
  local subject, pattern, start = as_string(s), as_string(p), as_integer(init, 1)
  if subject == nil or pattern == nil or start == nil then
    return call_c(string_find, s, p, init, plain)
  end
  local work
  if plain or string_find(pattern, SPECIALS) == nil then
    work = plain_work(#subject, #pattern)
  else
    work = pattern_work(#subject, pattern, not is_anchored(pattern))
  end
  if fits_in_c(work) then
    charge(work)
    return call_c(string_find, s, p, init, plain)
  end
  return lua_impl.find(subject, pattern, start, plain)
end

function guarded.match(s, p, init)
  local subject, pattern, start = as_string(s), as_string(p), as_integer(init, 1)
  if subject == nil or pattern == nil or start == nil then
    return call_c(string_match, s, p, init)
  end
  local work = pattern_work(#subject, pattern, not is_anchored(pattern))
  if fits_in_c(work) then
    charge(work)
    return call_c(string_match, s, p, init)
  end
  return lua_impl.match(subject, pattern, start)
end

-- The C iterator tries each start at most once over all its calls: its whole work is the
-- bound of one unanchored search ('^' is no anchor in gmatch).
function guarded.gmatch(s, p, init)
  local subject, pattern, start = as_string(s), as_string(p), as_integer(init, 1)
  if subject == nil or pattern == nil or start == nil then
    return call_c(string_gmatch, s, p, init)
  end
  local work = pattern_work(#subject, pattern, true)
  if fits_in_c(work) then
    charge(work)
    return call_c(string_gmatch, s, p, init)
  end
  return lua_impl.gmatch(subject, pattern, start)
end

function guarded.gsub(s, p, repl, max_n)
  local subject, pattern, count = as_string(s), as_string(p), as_integer(max_n, math_maxinteger)
  local repl_type = type(repl)
  if subject == nil or pattern == nil or count == nil
    or not (repl_type == "string" or repl_type == "number" or repl_type == "table" or repl_type == "function") then
    return call_c(string_gsub, s, p, repl, max_n)
  end
  local work = pattern_work(#subject, pattern, not is_anchored(pattern)) + #subject
  if fits_in_c(work) then
    charge(work)
    return call_c(string_gsub, s, p, repl, max_n)
  end
  return lua_impl.gsub(subject, pattern, repl, max_n ~= nil and count or nil)
end

function guarded.rep(s, n, sep)
  -- An empty result for any count: C would copy the empty string n times.
  if s == "" and (sep == nil or sep == "") then
    local count = math_tointeger(n)
    if count ~= nil and count > 1 then
      n = 1
    end
  end
  return call_c(string_rep, s, n, sep)
end

local MOVE_CHUNK = 100000

-- table.move in chunks the hook can interrupt, in C's order (forward, or backward when the
-- ranges overlap that way). Argument errors come from the first C call.
function guarded.move(a1, f, e, t, a2)
  if math_type(f) ~= "integer" or math_type(e) ~= "integer" or math_type(t) ~= "integer"
    or e < f or not (f > 0 or e < math_maxinteger + f) or e - f < MOVE_CHUNK then
    return call_c(table_move, a1, f, e, t, a2)
  end
  local n = e - f + 1
  if t > math_maxinteger - n + 1 then
    return call_c(table_move, a1, f, e, t, a2)
  end
  local target = a2 == nil and a1 or a2
  if t > e or t <= f or (a2 ~= nil and not (a1 == a2)) then
    for from = f, e, MOVE_CHUNK do
      table_move(a1, from, math_min(from + MOVE_CHUNK - 1, e), t + (from - f), target)
    end
  else
    local to = e
    while to >= f do
      local from = math_max(f, to - MOVE_CHUNK + 1)
      table_move(a1, from, to, t + (from - f), target)
      to = from - 1
    end
  end
  return target
end

local function less_than(a, b)
  return a < b
end

-- With a comparator every comparison runs a Lua function, where the hook fires.
function guarded.sort(list, comp)
  if comp == nil then
    return call_c(table_sort, list, less_than)
  end
  return call_c(table_sort, list, comp)
end

-- The Lua implementation on its own (for the tests that compare it with C's).
function lua_impl.find(s, p, init, plain)
  return run_matcher(raw.find, s, p, init, plain)
end

function lua_impl.match(s, p, init)
  return run_matcher(raw.match, s, p, init)
end

function lua_impl.gmatch(s, p, init)
  local next_match = raw.gmatch(s, p, init)
  return function()
    return run_matcher(next_match)
  end
end

function lua_impl.gsub(s, p, repl, max_n)
  return run_matcher(raw.gsub, s, p, repl, max_n)
end

return {
  string = { find = guarded.find, match = guarded.match, gmatch = guarded.gmatch, gsub = guarded.gsub, rep = guarded.rep },
  table = { move = guarded.move, sort = guarded.sort },
  lua = lua_impl,
  pattern_work = pattern_work,
  plain_work = plain_work,
  C_WORK_LIMIT = C_WORK_LIMIT,
}
