#!/usr/bin/env python3
"""Generates the inputs of scripts/bench: tenant specs and Terraform variables for the
same N tenants, and the large synthetic states of scenario 5.

    gen.py specs   PLATFORM_TOML OUT_DIR N TIERS     specs dir: platform.toml + tenants/*.toml
    gen.py tfvars  OUT_FILE N TIERS                  Terraform -var-file (JSON)
    gen.py tf-state TEMPLATE_TFSTATE OUT N TIERS     terraform.tfstate with N tenants
    gen.py tenantform-state TEMPLATE_DIR OUT_DIR N TIERS
                                                     state/tenants/*.json with N tenants

Tenants are bench-00001 .. bench-N; tier i is TIERS[(i-1) % len(TIERS)] (TIERS is a
comma-separated list of gold, silver, bronze). Every tenant is in us-east-1 with
internal data, so one Terraform provider configuration serves them all.

The synthetic states are made from a real apply of the first len(TIERS) tenants (the
templates): each template tenant's resources are copied for every tenant of its tier,
with the tenant id replaced in all its spellings (bench-00001, bench_00001,
BENCH-00001). So every synthetic resource is exactly what an apply would record.
"""

import json
import os
import sys
import uuid

TIERS = {
    # display name, budget (INR, inside the tier's range), s3_glacier_days, cache
    "gold": ("Gold", 1_500_000, 90, True),
    "silver": ("Silver", 600_000, 60, False),
    "bronze": ("Bronze", 200_000, 30, False),
}


def tenant_id(i):
    return f"bench-{i:05d}"


def tiers_of(arg):
    names = [t.strip() for t in arg.split(",") if t.strip()]
    for t in names:
        if t not in TIERS:
            sys.exit(f"gen.py: unknown tier {t!r}; use gold, silver, bronze")
    return names


def tier_of(i, tiers):
    return tiers[(i - 1) % len(tiers)]


def spellings(tid):
    return [tid, tid.replace("-", "_"), tid.upper()]


def retarget(text, src, dst):
    for a, b in zip(spellings(src), spellings(dst)):
        text = text.replace(a, b)
    return text


def cmd_specs(platform, out, n, tiers):
    os.makedirs(os.path.join(out, "tenants"), exist_ok=True)
    with open(platform) as f, open(os.path.join(out, "platform.toml"), "w") as g:
        # Roles trust only their service, as the Terraform side's do: the validation
        # principal of the example platform is not part of the comparison.
        g.write("".join(l for l in f if not l.startswith("trusted_principals")))
    for i in range(1, n + 1):
        tid, tier = tenant_id(i), tier_of(i, tiers)
        budget = TIERS[tier][1]
        with open(os.path.join(out, "tenants", f"{tid}.toml"), "w") as g:
            g.write(
                f'id = "{tid}"\n'
                f'name = "Bench tenant {i}"\n'
                f'tier = "{tier}"\n'
                f'region = "us-east-1"\n'
                f"budget_inr = {budget}\n"
                f'owner_email = "ops@{tid}.example"\n'
                f'cost_center = "CC-{tid.upper()}"\n'
                f'data_classification = "internal"\n'
                f"protected = false\n"
            )


def cmd_tfvars(out, n, tiers):
    tenants = {}
    for i in range(1, n + 1):
        tid, tier = tenant_id(i), tier_of(i, tiers)
        display, _, glacier, cache = TIERS[tier]
        tenants[tid] = {
            "tier": display,
            "cost_center": f"CC-{tid.upper()}",
            "glacier_days": glacier,
            "dedicated_cache": cache,
        }
    with open(out, "w") as f:
        json.dump({"tenants": tenants}, f, indent=1)


def cmd_tf_state(template, out, n, tiers):
    with open(template) as f:
        state = json.load(f)
    by_template = {}
    for r in state["resources"]:
        module = r.get("module", "")
        for k in range(1, len(tiers) + 1):
            if f'module.tenant["{tenant_id(k)}"]' == module:
                by_template.setdefault(k, []).append(r)
    if len(by_template) != len(tiers):
        sys.exit(f"gen.py: {template} does not hold the {len(tiers)} template tenants")
    resources = []
    for i in range(1, n + 1):
        k = (i - 1) % len(tiers) + 1
        for r in by_template[k]:
            resources.append(json.loads(retarget(json.dumps(r), tenant_id(k), tenant_id(i))))
    state["resources"] = resources
    state["serial"] = state.get("serial", 1) + 1
    with open(out, "w") as f:
        json.dump(state, f, indent=2)


def cmd_tenantform_state(template_dir, out, n, tiers):
    src = os.path.join(template_dir, "tenants")
    templates = {}
    for k in range(1, len(tiers) + 1):
        with open(os.path.join(src, f"{tenant_id(k)}.json")) as f:
            templates[k] = f.read()
    dst = os.path.join(out, "tenants")
    os.makedirs(dst, exist_ok=True)
    for i in range(1, n + 1):
        k = (i - 1) % len(tiers) + 1
        state = json.loads(retarget(templates[k], tenant_id(k), tenant_id(i)))
        state["lineage"] = str(uuid.uuid4())
        # "Bench tenant 1" names the template in the applied spec.
        if isinstance(state.get("applied_spec"), dict):
            state["applied_spec"]["name"] = f"Bench tenant {i}"
        text = json.dumps(state, indent=2)
        # ... and the schema comment "(Bench tenant 1)" and the dashboard title
        # "Tenant Bench tenant 1 (bench-00001)".
        text = text.replace(f"Bench tenant {k})", f"Bench tenant {i})")
        text = text.replace(f"Bench tenant {k} (", f"Bench tenant {i} (")
        path = os.path.join(dst, f"{tenant_id(i)}.json")
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)


def main():
    a = sys.argv[1:]
    try:
        if a[0] == "specs":
            cmd_specs(a[1], a[2], int(a[3]), tiers_of(a[4]))
        elif a[0] == "tfvars":
            cmd_tfvars(a[1], int(a[2]), tiers_of(a[3]))
        elif a[0] == "tf-state":
            cmd_tf_state(a[1], a[2], int(a[3]), tiers_of(a[4]))
        elif a[0] == "tenantform-state":
            cmd_tenantform_state(a[1], a[2], int(a[3]), tiers_of(a[4]))
        else:
            raise IndexError
    except (IndexError, ValueError):
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
