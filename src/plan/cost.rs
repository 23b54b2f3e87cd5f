//! Estimated monthly cost of a tenant: the tier's price per component (as in the
//! platform's tier catalog, for us-east-1) times the region's cost multiplier.
//!
//! Pure, like the rest of the plan: the catalog is the only price list. The estimate
//! rides along in the plan so that a pull-request comment shows what a change costs
//! and whether it fits the tenant's budget.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::spec::{PlatformSpec, TenantSpec};
use crate::state::AppliedSpec;

/// One tenant's estimated monthly cost, in INR.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostEstimate {
    pub tier: String,
    pub region: String,
    pub region_multiplier: f64,
    /// Per component (`postgres`, `cache`, ...), the multiplier applied, rounded to rupees.
    pub components: BTreeMap<String, f64>,
    /// The sum of the components.
    pub monthly_inr: f64,
    /// The tenant's monthly budget (`budget_inr` in its spec).
    pub budget_inr: i64,
    /// The estimate for the spec last applied, when that differs (a tier or region
    /// change); `None` for a new tenant or an unchanged estimate.
    pub before_monthly_inr: Option<f64>,
}

impl CostEstimate {
    /// The estimate for `spec`; `before` is the spec last applied, if any. `None` when
    /// the tier or region is not in the catalog (spec validation prevents that).
    pub fn of(
        spec: &TenantSpec,
        platform: &PlatformSpec,
        before: Option<&AppliedSpec>,
    ) -> Option<Self> {
        let (region_multiplier, components) = priced(platform, &spec.tier, &spec.region)?;
        let monthly_inr = components.values().sum();
        let before_monthly_inr = before
            .and_then(|b| priced(platform, &b.tier, &b.region))
            .map(|(_, c)| c.values().sum::<f64>())
            .filter(|b| *b != monthly_inr);
        Some(CostEstimate {
            tier: spec.tier.clone(),
            region: spec.region.clone(),
            region_multiplier,
            components,
            monthly_inr,
            budget_inr: spec.budget_inr,
            before_monthly_inr,
        })
    }

    /// Whether the estimate exceeds the tenant's budget.
    pub fn over_budget(&self) -> bool {
        self.monthly_inr > self.budget_inr as f64
    }

    /// A sentence for the plan when the estimate exceeds the budget.
    pub fn warning(&self, tenant: &str) -> Option<String> {
        self.over_budget().then(|| {
            format!(
                "tenant {tenant}: the estimated cost of {}/month exceeds its budget of {} by {}; raise budget_inr in specs/tenants/{tenant}.toml or choose a smaller tier",
                inr(self.monthly_inr),
                inr(self.budget_inr as f64),
                inr(self.monthly_inr - self.budget_inr as f64)
            )
        })
    }
}

/// The region's multiplier and the tier's components priced for that region, rounded
/// to rupees; `None` when the tier or the region is not in the catalog.
fn priced(
    platform: &PlatformSpec,
    tier: &str,
    region: &str,
) -> Option<(f64, BTreeMap<String, f64>)> {
    let tier = platform.tiers.get(tier)?;
    let region = platform.regions.get(region)?;
    let components = tier
        .monthly_cost_inr
        .iter()
        .map(|(k, v)| (k.clone(), (v * region.cost_multiplier).round()))
        .collect();
    Some((region.cost_multiplier, components))
}

/// `₹1,48,000`: rupees, rounded, grouped the Indian way (lakh, crore).
pub fn inr(amount: f64) -> String {
    let rounded = amount.round();
    let negative = rounded < 0.0;
    let digits = format!("{:.0}", rounded.abs());
    let mut grouped = String::new();
    let (head, last3) = digits.split_at(digits.len().saturating_sub(3));
    let head: Vec<char> = head.chars().collect();
    let first = head.len() % 2;
    for (i, c) in head.iter().enumerate() {
        if i > 0 && (i + 2 - first).is_multiple_of(2) {
            grouped.push(',');
        }
        grouped.push(*c);
    }
    if !head.is_empty() {
        grouped.push(',');
    }
    grouped.push_str(last3);
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    let _ = write!(out, "₹{grouped}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Specs;

    #[test]
    fn rupees_are_grouped_in_lakh_and_crore() {
        assert_eq!(inr(0.0), "₹0");
        assert_eq!(inr(999.0), "₹999");
        assert_eq!(inr(1000.0), "₹1,000");
        assert_eq!(inr(56_400.0), "₹56,400");
        assert_eq!(inr(148_000.0), "₹1,48,000");
        assert_eq!(inr(1_500_000.0), "₹15,00,000");
        assert_eq!(inr(12_345_678.4), "₹1,23,45,678");
        assert_eq!(inr(-1500.0), "-₹1,500");
    }

    #[test]
    fn estimates_follow_the_catalog_and_the_region() {
        let specs =
            Specs::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs")).unwrap();
        let t = |id: &str| specs.tenants[&id.parse().unwrap()].clone();
        let gold = CostEstimate::of(&t("healthcare-systems"), &specs.platform, None).unwrap();
        assert_eq!(gold.monthly_inr, 148_000.0); // us-east-1, 1.0x
        let silver = CostEstimate::of(&t("retail-chain"), &specs.platform, None).unwrap();
        assert_eq!(silver.monthly_inr, 56_400.0); // 47,000 at 1.2x in eu-west-1
        assert_eq!(silver.components["cache"], 9_600.0);
        let bronze = CostEstimate::of(&t("education-platform"), &specs.platform, None).unwrap();
        assert_eq!(bronze.monthly_inr, 15_300.0); // 17,000 at 0.9x in ap-south-1
        assert!(!gold.over_budget() && !silver.over_budget() && !bronze.over_budget());

        let mut upgraded = t("education-platform");
        upgraded.tier = "gold".into();
        upgraded.budget_inr = 100_000;
        let before = AppliedSpec::from(&t("education-platform"));
        let up = CostEstimate::of(&upgraded, &specs.platform, Some(&before)).unwrap();
        assert_eq!(up.monthly_inr, 133_200.0); // 148,000 at 0.9x
        assert_eq!(up.before_monthly_inr, Some(15_300.0));
        assert!(up.over_budget());
        let w = up.warning("education-platform").unwrap();
        assert!(
            w.contains("₹1,33,200/month exceeds its budget of ₹1,00,000 by ₹33,200"),
            "{w}"
        );
        assert!(bronze.warning("education-platform").is_none());
    }
}
