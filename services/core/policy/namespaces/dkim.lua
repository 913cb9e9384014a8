-- kumo.dkim: DKIM signers and msg:dkim_sign (signing is dkimpy's, in dkim.py). A signer is
-- an opaque object; its checked parameters are kept here, out of the policy's reach.
local lib = ...
local kumo, Message, active, host_function = lib.kumo, lib.Message, lib.active, lib.host_function
local encode_value, is_fatal, policy_location = lib.encode_value, lib.is_fatal, lib.policy_location
local error, type, pcall, tostring, setmetatable = error, type, pcall, tostring, setmetatable

local make_signer = host_function("dkim_make_signer")
local sign = host_function("dkim_sign")
local set_signing_threads = host_function("dkim_set_signing_threads")

local SignerMeta = {
  __metatable = false,
  __name = "DkimSigner",
  __tostring = function() return "DkimSigner" end,
}
local signer_specs = setmetatable({}, { __mode = "k" }) -- signer -> { algorithm, params JSON }

local function constructor(algorithm, name)
  return function(params)
    if type(params) ~= "table" then
      error(policy_location(2) .. "kumo.dkim." .. name .. ": expected a table, got a "
        .. type(params), 0)
    end
    local ok, text = pcall(encode_value, params, 0)
    if not ok then
      if is_fatal(text) then
        error(text, 0)
      end
      error(policy_location(2) .. "kumo.dkim." .. name .. ": " .. tostring(text), 0)
    end
    local signer = setmetatable({}, SignerMeta)
    signer_specs[signer] = { algorithm, make_signer(algorithm, text) }
    return signer
  end
end

kumo.dkim = {
  rsa_sha256_signer = constructor("rsa-sha256", "rsa_sha256_signer"),
  ed25519_signer = constructor("ed25519-sha256", "ed25519_signer"),
  set_signing_threads = function(count)
    set_signing_threads(count)
  end,
}

function Message:dkim_sign(signer)
  active(self, "dkim_sign")
  local spec = signer_specs[signer]
  if spec == nil then
    error(policy_location(2) .. "msg:dkim_sign: expected a signer from "
      .. "kumo.dkim.rsa_sha256_signer or kumo.dkim.ed25519_signer, got a " .. type(signer), 0)
  end
  sign(spec[1], spec[2])
end
