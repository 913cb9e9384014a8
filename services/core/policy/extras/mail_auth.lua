-- policy-extras.mail_auth is refused: it checks SPF, DKIM, DMARC, ARC and iprev at reception
-- with kumo.spf, kumo.dmarc, msg:dkim_verify, msg:arc_verify and kumo.dns.define_resolver,
-- none of which relaystream provides; a policy using it would accept mail unauthenticated.
-- Level 4: the policy's require call (this chunk, pcall, require_extra, policy: require
-- tail-calls require_extra).
error('policy-extras.mail_auth is not available in relaystream: it needs kumo.spf, '
  .. 'kumo.dmarc, msg:dkim_verify and msg:arc_verify (SPF/DKIM/DMARC/ARC verification), '
  .. 'which relaystream does not provide; verify authentication before relaystream', 4)
