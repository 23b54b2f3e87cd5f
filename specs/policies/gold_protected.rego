# Gold tenants must be protected (mandatory: a `deny` rule).
#
# A Gold tenant carries a customer's SLA and its data; deleting it by accident must
# be impossible. `protected = true` in its spec makes tenantform refuse any plan that
# would delete or replace its resources. This policy makes the flag itself required:
# a plan that would create or keep a Gold tenant without it exits 1, and apply refuses.
package tenantform.gold_protected

deny contains violation if {
	some t in input.tenants
	t.spec.tier == "gold"
	not t.protected
	violation := {
		"msg": sprintf("tenant %s is Gold and must be protected: set protected = true in specs/tenants/%s.toml", [t.tenant, t.tenant]),
		"tenant": t.tenant,
	}
}
