# No tenant's monthly estimate above its budget (advisory: a `warn` rule).
#
# The estimate is the tier's price times the region's multiplier (`cost` of each
# tenant in the plan's JSON). Over budget is worth a look in review, not a reason to
# stop a change: the plan and apply go on.
package tenantform.budget

warn contains violation if {
	some t in input.tenants
	t.cost.monthly_inr > t.cost.budget_inr
	violation := {
		"msg": sprintf("tenant %s is estimated at %v INR a month, above its budget of %v INR", [t.tenant, t.cost.monthly_inr, t.cost.budget_inr]),
		"tenant": t.tenant,
	}
}
