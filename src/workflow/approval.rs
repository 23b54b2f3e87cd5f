//! Who must approve a tenant request, from the platform's approval rules. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::{PlatformSpec, TenantSpec};

/// One role whose approval a request needs, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequiredApproval {
    pub role: String,
    /// Every rule that asks for this role, in words.
    pub reasons: Vec<String>,
}

fn lakh(inr: i64) -> String {
    let l = inr as f64 / 100_000.0;
    if l.fract() == 0.0 {
        format!("₹{l:.0} lakh")
    } else {
        format!("₹{l:.1} lakh")
    }
}

/// The approvals `tenant` needs, by role name order. Empty: approved automatically.
///
/// - budget below `auto_approve_below_inr`: nothing; up to `limit_inr`:
///   `approvers_up_to_limit`; above: `approvers_above_limit`;
/// - a sensitive data classification adds `sensitive_data`;
/// - a region outside the platform's `home_jurisdiction` adds `cross_border`;
/// - the tier adds `tiers.<tier>`.
pub fn required_approvals(platform: &PlatformSpec, tenant: &TenantSpec) -> Vec<RequiredApproval> {
    let rules = &platform.approval;
    let mut needed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut add = |roles: &[String], reason: String| {
        for r in roles {
            needed.entry(r.clone()).or_default().push(reason.clone());
        }
    };
    let budget = tenant.budget_inr;
    if budget >= rules.auto_approve_below_inr {
        if budget <= rules.limit_inr {
            add(
                &rules.approvers_up_to_limit,
                format!(
                    "budget {} is from {} to {}",
                    lakh(budget),
                    lakh(rules.auto_approve_below_inr),
                    lakh(rules.limit_inr)
                ),
            );
        } else {
            add(
                &rules.approvers_above_limit,
                format!("budget {} is above {}", lakh(budget), lakh(rules.limit_inr)),
            );
        }
    }
    if let Some(class) = platform
        .data_classifications
        .get(&tenant.data_classification)
        && class.sensitive
    {
        add(
            &rules.sensitive_data,
            format!("{} data is sensitive", tenant.data_classification),
        );
    }
    if let (Some(home), Some(region)) = (
        &rules.home_jurisdiction,
        platform.regions.get(&tenant.region),
    ) && &region.jurisdiction != home
    {
        add(
            &rules.cross_border,
            format!(
                "{} ({}) is outside the platform's home jurisdiction ({home}): a cross-border transfer",
                tenant.region, region.jurisdiction
            ),
        );
    }
    if let Some(roles) = rules.tiers.get(&tenant.tier) {
        add(roles, format!("tier {}", tenant.tier));
    }
    needed
        .into_iter()
        .map(|(role, reasons)| RequiredApproval { role, reasons })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn platform() -> PlatformSpec {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/platform.toml");
        PlatformSpec::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn tenant(tier: &str, region: &str, budget: i64, class: &str) -> TenantSpec {
        TenantSpec {
            id: "acme".parse().unwrap(),
            name: "Acme".into(),
            tier: tier.into(),
            region: region.into(),
            budget_inr: budget,
            owner_email: "o@acme.example".into(),
            cost_center: "CC".into(),
            data_classification: class.into(),
            protected: false,
        }
    }

    fn roles(p: &PlatformSpec, t: &TenantSpec) -> Vec<String> {
        required_approvals(p, t)
            .into_iter()
            .map(|a| a.role)
            .collect()
    }

    #[test]
    fn budget_bands_follow_the_platform_rules() {
        let p = platform();
        assert!(roles(&p, &tenant("silver", "ap-south-1", 999_999, "internal")).is_empty());
        assert_eq!(
            roles(&p, &tenant("silver", "ap-south-1", 1_000_000, "internal")),
            ["cfo"]
        );
        assert_eq!(
            roles(&p, &tenant("silver", "ap-south-1", 5_000_000, "internal")),
            ["cfo"]
        );
        assert_eq!(
            roles(&p, &tenant("silver", "ap-south-1", 25_000_000, "internal")),
            ["cfo", "cto", "legal"]
        );
    }

    #[test]
    fn sensitive_data_cross_border_and_gold_add_approvers_with_reasons() {
        let p = platform();
        let a = required_approvals(&p, &tenant("gold", "us-east-1", 1_500_000, "phi"));
        let names: Vec<&str> = a.iter().map(|a| a.role.as_str()).collect();
        assert_eq!(names, ["cfo", "compliance", "cto", "dpo", "legal"]);
        let dpo = a.iter().find(|a| a.role == "dpo").unwrap();
        assert!(dpo.reasons[0].contains("cross-border"), "{:?}", dpo.reasons);
        let cto = a.iter().find(|a| a.role == "cto").unwrap();
        assert_eq!(cto.reasons, ["tier gold"]);
        assert_eq!(
            roles(
                &p,
                &tenant("bronze", "ap-south-1", 200_000, "india-resident")
            ),
            ["compliance", "legal"]
        );
    }
}
